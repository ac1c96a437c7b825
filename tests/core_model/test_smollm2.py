"""The real offline default (SmolLM2-135M-Instruct GGUF) against transformers on the same file."""
from __future__ import annotations

import pytest
import torch

from core_model.loading import default_gguf_path

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "List three colours.",
    "Write one sentence about a red bus.",
]


def chat(q: str) -> str:
    return ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def hf():
    path = default_gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


@pytest.fixture(params=["packed", "dense"])
def model(request, smollm2, smollm2_dense):
    """Both weight forms: the GGUF's blocks through the C kernels (default) and the dequantised float32 tensors."""
    m = smollm2 if request.param == "packed" else smollm2_dense
    assert m.describe()["weights"].startswith(request.param)
    return m


def test_tokenizer_matches_transformers(smollm2, hf):
    _, tok = hf
    for text in [chat("What is 12345 + 678?"), "Hello, world! ünïcödé  spaces\n\nnew para", "a1b22c333 ..."]:
        assert smollm2.tokenizer.encode(text) == tok(text, add_special_tokens=False)["input_ids"], text
        ids = smollm2.tokenizer.encode(text)
        assert smollm2.tokenizer.decode(ids, skip_special=False) == tok.decode(ids)


def test_greedy_output_equals_transformers(model, hf):
    hf_model, _ = hf
    for q in PROMPTS:
        ids = model.tokenizer.encode(chat(q))
        ours = model.generate(chat(q), max_new_tokens=24)
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                    eos_token_id=sorted(model.tokenizer.eos_ids), pad_token_id=2)
        theirs = out[0, len(ids):].tolist()
        while theirs and theirs[-1] in model.tokenizer.eos_ids:
            theirs.pop()
        assert ours.token_ids[: len(theirs)] == theirs, q


def test_logits_close_to_transformers(model, hf):
    hf_model, _ = hf
    ids = torch.tensor([model.tokenizer.encode(chat(PROMPTS[0]))])
    with torch.no_grad():
        assert (model.llm(ids) - hf_model(ids).logits).abs().max() < 1e-3


def test_packed_and_dense_agree_on_every_position(smollm2, smollm2_dense):
    """Same weight values, different summation order: logits within float32 noise, the same argmax."""
    ids = torch.tensor([smollm2.tokenizer.encode(chat(q)) for q in PROMPTS[:1]] * 2)
    with torch.no_grad():
        packed, dense = smollm2.llm(ids), smollm2_dense.llm(ids)  # prefill path (2 x 30+ rows)
        step_p = smollm2.llm(ids[:1, :1])  # decode path (one row)
        step_d = smollm2_dense.llm(ids[:1, :1])
    assert (packed - dense).abs().max() < 1e-3
    assert torch.equal(packed.argmax(-1), dense.argmax(-1))
    assert (step_p - step_d).abs().max() < 1e-3


def test_default_model_knows_paris(model):
    out = model.generate(chat("What is the capital of France?"), max_new_tokens=20)
    assert "Paris" in out.text
    assert out.finish_reason == "stop"


def test_continuation_logprobs_prefer_the_true_answer_and_match_transformers(model, hf):
    """The extractive answer mode's scorer on the real model: the right span scores higher, and every token's
    log-probability matches transformers scoring the whole sequence."""
    prompt = chat("What is the capital of France?")
    conts = ["Paris", "Berlin", "The capital of France is Paris."]
    got = model.continuation_logprobs(prompt, conts)
    assert sum(got[0]) > sum(got[1]) + 2.0
    hf_model, _ = hf
    p = model._prompt_ids([prompt])[0]
    for cont, scores in zip(conts, got):
        c = model.tokenizer.encode(cont, bos=False, parse_special=False)
        with torch.inference_mode():
            logp = torch.log_softmax(hf_model(torch.tensor([p + c])).logits[0].float(), dim=-1)
        want = [float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c)]
        assert max(abs(a - b) for a, b in zip(scores, want)) < 0.05, cont

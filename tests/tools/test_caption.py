"""Caption expert: adapter-style model objects, plain callables, and a tiny random transformers BLIP (plumbing only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tools import CaptionTool
from tools.caption import ALPACA_TEMPLATE, DEFAULT_CAPTION_INSTRUCTION


@pytest.fixture
def red() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 10, 10))


class Completion:
    def __init__(self, text: str) -> None:
        self.text = text


class FakeAdapterModel:
    """Shaped like core_model's model: generate(prompts, images=..., max_new_tokens=..., temperature=...)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls: list[tuple[Any, Any, dict]] = []

    def generate(self, prompts, images=None, *, max_new_tokens=256, temperature=0.1):
        self.calls.append((prompts, images, {"max_new_tokens": max_new_tokens, "temperature": temperature}))
        return self.reply


def test_adapter_model_gets_the_caption_instruction_and_the_image(red: Image.Image, tmp_path: Path) -> None:
    model = FakeAdapterModel(Completion("  A red square on a plain background.\n\nIt is red. It is square."))
    tool = CaptionTool(model=model)
    assert tool.backend == "adapter" and tool.status().ready
    path = tmp_path / "red.png"
    red.save(path)
    result = tool.run_expert(image=str(path))
    assert result.error is None
    assert result.text == "A red square on a plain background."  # first paragraph only, one line
    assert result.data == {"caption": "A red square on a plain background.", "backend": "adapter"}
    prompt, images, kwargs = model.calls[0]
    assert prompt == ALPACA_TEMPLATE.format(instruction=DEFAULT_CAPTION_INSTRUCTION)
    assert "### Instruction:\nGenerate caption of this image\n\n### Response:" in prompt
    assert len(images) == 1 and images[0].mode == "RGB" and images[0].getpixel((0, 0)) == (200, 10, 10)
    assert kwargs == {"max_new_tokens": 48, "temperature": 0.0}


def test_generic_generate_gets_only_the_arguments_it_accepts(red: Image.Image) -> None:
    class Minimal:
        def generate(self, prompt, images):
            self.seen = (prompt, images)
            return ["a list of outputs, first one wins", "ignored"]

    model = Minimal()
    tool = CaptionTool(model=model, prompt_template="{instruction}", instruction="Describe.")
    assert tool.run_expert(image=red).text == "a list of outputs, first one wins"
    assert model.seen[0] == "Describe."

    custom = CaptionTool(model=FakeAdapterModel("plain string reply"), prompt_template=lambda i: f"<s>{i}</s>")
    assert custom.run_expert(image=red).text == "plain string reply"
    assert custom.model.calls[0][0] == "<s>Generate caption of this image</s>"


def test_callable_backend(red: Image.Image) -> None:
    tool = CaptionTool(model=lambda im: f"a {im.width}x{im.height} red picture")
    assert tool.backend == "callable"
    assert tool.run_expert(image=red).text == "a 64x48 red picture"
    assert tool.invoke({"image": "/does/not/exist.png"}).startswith("caption: image file not found")


def test_empty_or_failing_backends_give_errors_not_exceptions(red: Image.Image) -> None:
    assert "empty caption" in (CaptionTool(model=lambda im: "   ").run_expert(image=red).error or "")

    def broken(im):
        raise RuntimeError("CUDA out of memory")

    assert CaptionTool(model=broken).run_expert(image=red).error == "RuntimeError: CUDA out of memory"


def test_no_backend_is_unavailable_with_how_to_fix(red: Image.Image) -> None:
    tool = CaptionTool()
    assert not tool.status().ready
    assert "pass CaptionTool(model=" in tool.status().reason and "hf_model=" in tool.status().reason
    assert tool.run_expert(image=red).error.startswith("unavailable: no caption backend configured")


def test_invalid_configurations_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"either model=\.\.\. or hf_model="):
        CaptionTool(model=lambda im: "x", hf_model="some/model")
    with pytest.raises(ValueError, match=r"must have a \.generate"):
        CaptionTool(model=42)


def test_hub_id_offline_and_missing_directory_are_unavailable(tmp_path: Path) -> None:
    offline = CaptionTool(hf_model="Salesforce/blip-image-captioning-base").status()
    assert not offline.ready and "not in the local Hugging Face cache" in offline.reason
    missing = CaptionTool(hf_model=str(tmp_path / "nope")).status()
    assert not missing.ready and "does not exist" in missing.reason
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in CaptionTool(hf_model=str(tmp_path / "empty")).status().reason


def _tiny_blip(directory: Path) -> Path:
    """A randomly initialised BLIP captioner (~100 KB) with a 20-word vocabulary, saved like a hub checkpoint."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "bus", "person", "the",
             "on", "street", "red", "car", "dog", "with", "in", "##s"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3},
        projection_dim=32,
    )
    out = directory / "tiny-blip"
    import torch

    torch.manual_seed(0)  # random weights: a fixed seed so the greedy output is the same non-empty words every run
    BlipForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.mark.slow
def test_transformers_backend_loads_a_saved_model_and_generates(tmp_path: Path, red: Image.Image) -> None:
    pytest.importorskip("transformers")
    path = _tiny_blip(tmp_path)
    tool = CaptionTool(hf_model=str(path), max_new_tokens=6)
    assert tool.status().ready and tool.backend == "transformers"
    result = tool.run_expert(image=red)
    assert result.error is None, result.error
    words = result.text.split()
    assert 1 <= len(words) <= 6  # random weights: the words mean nothing, but they come from the vocabulary
    assert result.data["backend"] == "transformers"
    loaded = tool._hf
    again = tool.run_expert(image=red)
    assert again.text == result.text  # greedy decoding
    assert tool._hf is loaded  # the model is loaded once and reused (not a timing comparison: flaky under load)
    prefixed = CaptionTool(hf_model=str(path), hf_prompt="a photo of", max_new_tokens=4).run_expert(image=red)
    assert prefixed.error is None and prefixed.text.startswith("a photo of")


@pytest.mark.slow
def test_transformers_backend_runs_no_code_from_the_model_directory(tmp_path: Path, red: Image.Image) -> None:
    """Audit of the transformers loader: a .bin that would run code on unpickling is refused (weights_only), and
    custom modeling code named by config.json is not imported (trust_remote_code=False)."""
    pytest.importorskip("transformers")
    import json

    import torch

    path = _tiny_blip(tmp_path)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('ran')",)

    for f in path.glob("*.safetensors"):
        f.unlink()
    torch.save({"vision_model.embeddings.class_embedding": Payload()}, path / "pytorch_model.bin")
    result = CaptionTool(hf_model=str(path)).run_expert(image=red)
    assert not marker.exists() and result.error and result.error.startswith("unavailable: cannot load")

    code_marker = tmp_path / "CODE-RAN"
    remote = _tiny_blip(tmp_path / "remote") if (tmp_path / "remote").mkdir() is None else None
    (remote / "evil_modeling.py").write_text(f"open({str(code_marker)!r}, 'w').write('ran')\n")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil_modeling.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    CaptionTool(hf_model=str(remote)).run_expert(image=red)
    assert not code_marker.exists()

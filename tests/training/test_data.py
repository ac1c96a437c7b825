"""Data: the readers on every format (and their errors, which name file and record), response-only labels through
the prompt styles (all turns of a conversation), length limits, and the rank-aware resumable sampler."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core_model import ByteTokenizer
from prompts import CAPTION_INSTRUCTION, get_style
from training.config import SourceSpec
from training.data import (IGNORE_INDEX, Example, ExampleDataset, StreamSampler, collate, encode_example,
                           expand_turns, interleave_pattern, read_source, steps_per_stream, tokenize_segments)
from training.errors import DataError
from training.synthetic import caption_for, draw_shape

TOK = ByteTokenizer()


def _labelled_text(ids, labels, tok=TOK) -> str:
    return tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX])


# ------------------------------------------------------------------------------------------------ readers
def test_synthetic_images_match_their_captions(synth):
    coco = json.loads(synth.coco.read_text())
    assert len(coco["images"]) == 24 and len(coco["annotations"]) == 24
    ann = coco["annotations"][0]
    words = ann["caption"].split()  # "a red circle on a blue background"
    img = draw_shape(words[2], words[1], words[5], 64)
    assert caption_for(words[2], words[1], words[5]) == ann["caption"]
    assert img.getpixel((1, 1)) != img.getpixel((32, 32)) or words[1] == words[5]


def test_coco_and_tsv_give_the_same_caption_examples(synth):
    coco = read_source(SourceSpec("coco", str(synth.coco), str(synth.root / "images")))
    tsv = read_source(SourceSpec("caption_tsv", str(synth.tsv)))
    assert len(coco) == len(tsv) == 24
    for a, b in zip(coco, tsv):
        assert a.messages == b.messages and a.messages[0] == ("user", CAPTION_INSTRUCTION)
        assert Path(a.image).resolve() == Path(b.image).resolve() and Path(a.image).is_file()
    assert "annotations[3]" in coco[3].source and tsv[3].source.endswith(":5")  # header line + 1-based


def test_alpaca_sharegpt_llava(synth):
    alpaca = read_source(SourceSpec("alpaca", str(synth.alpaca)))
    assert any(ex.input for ex in alpaca) and all(ex.messages[-1][0] == "assistant" for ex in alpaca)
    convs = read_source(SourceSpec("sharegpt", str(synth.sharegpt)))
    assert all(len(ex.messages) == 4 for ex in convs)  # every turn kept, not only the first exchange
    llava = read_source(SourceSpec("llava", str(synth.llava), str(synth.root / "images")))
    assert llava[0].image and Path(llava[0].image).is_file()
    assert llava[0].messages[0] == ("user", "What shape is in the image?")  # <image> placeholder removed


def _write(tmp_path: Path, name: str, obj) -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize("fmt, content, message", [
    ("alpaca", "[{\"instruction\": \"x\", ", r"bad\.json: not valid JSON"),
    ("alpaca", [{"instruction": "a", "output": "b"}, {"instruction": "c"}], r"bad\.json#1: field 'output' is missing"),
    ("alpaca", [{"instruction": "a", "output": 3}], r"bad\.json#0: field 'output' is a int"),
    ("alpaca", {"instruction": "a"}, "JSON list"),
    ("sharegpt", [{"id": "q1", "conversations": [{"from": "robot", "value": "hi"}]}],
     r"bad\.json#0 \(id q1\) turn 0: unknown speaker 'robot'"),
    ("sharegpt", [{"conversations": "hi"}], r"bad\.json#0: no 'conversations'"),
    ("coco", {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "c"}]},
     r"bad\.json#annotations\[0\]: image_id 2 is not listed"),
    ("caption_tsv", "url\tcaption\nonlyone\n", r"bad\.json:2: expected 'image_path<TAB>caption'"),
    ("caption_tsv", "http://x/y.jpg\ta cat\n", r"bad\.json:1: image 'http://x/y.jpg' is a URL"),
    ("llava", [{"image": "missing.png", "conversations": [{"from": "human", "value": "q"},
                                                         {"from": "gpt", "value": "a"}]}],
     r"image\(s\) not found.*missing\.png \(record .*bad\.json#0\)"),
])
def test_malformed_data_names_file_and_record(tmp_path, fmt, content, message):
    path = _write(tmp_path, "bad.json", content)
    with pytest.raises(DataError, match=message):
        read_source(SourceSpec(fmt, str(path)))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(SourceSpec("coco", str(tmp_path / "nope.json")))


# ------------------------------------------------------------------------------------------------ labels
def test_alpaca_caption_labels_are_the_caption_plus_eos():
    ex = Example((("user", CAPTION_INSTRUCTION), ("assistant", "a red circle on a blue background")), "t")
    ids, labels = encode_example(ex, TOK, get_style("alpaca"), 1000)
    assert ids[0] == TOK.bos_id and labels[0] == IGNORE_INDEX
    assert TOK.decode(ids).startswith("Below is an instruction") and "### Response:" in TOK.decode(ids)
    assert _labelled_text(ids, labels) == "a red circle on a blue background"
    assert ids[-1] == TOK.eos_id and labels[-1] == TOK.eos_id  # Alpaca has no end marker: EOS is learned


def test_alpaca_input_goes_to_the_input_block():
    ex = Example((("user", "Spell the word backwards."), ("assistant", "tac")), "t", input="cat")
    ids, labels = encode_example(ex, TOK, get_style("alpaca"), 1000)
    assert "### Input:\ncat" in TOK.decode(ids)
    assert _labelled_text(ids, labels) == "tac"


def test_chat_style_trains_every_assistant_turn():
    ex = Example((("user", "q1"), ("assistant", "A1"), ("user", "q2"), ("assistant", "A2")), "t")
    ids, labels = encode_example(ex, TOK, get_style("chatml"), 1000)
    assert _labelled_text(ids, labels) == "A1<|im_end|>A2<|im_end|>"
    assert "q1" in TOK.decode(ids) and "q1" not in _labelled_text(ids, labels)


def test_single_exchange_style_expands_conversations_to_every_reply():
    ex = Example((("user", "q1"), ("assistant", "A1"), ("user", "q2"), ("assistant", "A2")), "conv#0")
    out = expand_turns([ex], get_style("alpaca"))
    assert len(out) == 2 and out[0].messages == ex.messages[:2] and out[1].messages == ex.messages
    texts = [_labelled_text(*encode_example(e, TOK, get_style("alpaca"), 2000)) for e in out]
    assert texts == ["A1", "A2"]
    assert "Conversation so far" in TOK.decode(encode_example(out[1], TOK, get_style("alpaca"), 2000)[0])
    assert expand_turns([ex], get_style("chatml")) == [ex]


def test_length_limit_truncates_and_warns_on_empty_targets(caplog):
    ex = Example((("user", "x" * 50), ("assistant", "yes")), "long#0")
    ids, labels = encode_example(ex, TOK, get_style("plain"), 20)
    assert len(ids) == len(labels) == 20 and all(lab == IGNORE_INDEX for lab in labels)
    ds = ExampleDataset([ex], TOK, "plain", 20, name="instruction")
    with caplog.at_level("WARNING"):
        ds[0]
    assert "no response tokens within data.max_len=20" in caplog.text and "long#0" in caplog.text


def test_bpe_tokenizer_boundaries_smollm2():
    """With a real BPE tokenizer (SmolLM2's, offline) the labels are exactly the replies and end markers."""
    pytest.importorskip("gguf")
    from core_model.errors import ModelLoadError
    from core_model.loading import resolve_base

    try:
        tok = resolve_base("smollm2-135m").tokenizer
    except ModelLoadError as e:
        pytest.skip(f"SmolLM2 not installed: {e}")
    ex = Example((("user", "What is 2+2?"), ("assistant", "4, of course."), ("user", "And 3+3?"),
                  ("assistant", "6.")), "t")
    ids, labels = encode_example(ex, tok, get_style("smollm2"), 1000)
    assert ids == tok.encode(get_style("smollm2").format_chat(
        [{"role": r, "content": c} for r, c in ex.messages], add_generation_prompt=False))
    assert _labelled_text(ids, labels, tok) == "4, of course.6."  # <|im_end|> is special: skipped by decode
    assert sum(1 for t, lab in zip(ids, labels) if lab != IGNORE_INDEX and t in tok.eos_ids) == 2


def test_tokenize_segments_maps_bpe_seams_to_the_segment_they_start_in():
    class Merging:  # a toy tokenizer that merges "ab" into one token, like BPE across a seam
        eos_id, bos_id = 99, None

        def encode(self, text):
            out, i = [], 0
            while i < len(text):
                if text[i:i + 2] == "ab":
                    out.append(1000)
                    i += 2
                else:
                    out.append(ord(text[i]))
                    i += 1
            return out

    ids, labels = tokenize_segments(Merging(), [("xa", False), ("bc", True)], append_eos=False)
    assert ids == [ord("x"), 1000, ord("c")]
    assert labels == [IGNORE_INDEX, 1000, ord("c")]  # the merged token starts in the prompt -> mapped by prefix


def test_collate_shifts_targets_and_pads():
    items = [{"ids": [1, 2, 3], "labels": [IGNORE_INDEX, 2, 3], "pixels": None, "source": "a"},
             {"ids": [4, 5], "labels": [IGNORE_INDEX, 5], "pixels": None, "source": "b"}]
    b = collate(items, pad_id=0)
    assert b.tokens.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert b.targets.tolist() == [[2, 3, IGNORE_INDEX], [5, IGNORE_INDEX, IGNORE_INDEX]]
    assert b.n_targets == 3 and b.pixels is None
    items[1]["pixels"] = torch.ones(3, 4, 4)
    mixed = collate(items, pad_id=0)
    assert mixed.pixels.shape == (1, 3, 4, 4) and mixed.image_rows == [1]  # only the row that has an image


# ------------------------------------------------------------------------------------------------ sampling
def test_two_ranks_see_exactly_what_one_process_sees():
    one = StreamSampler(50, micro_batch=4, world_size=1, rank=0, seed=3)
    r0 = StreamSampler(50, micro_batch=2, world_size=2, rank=0, seed=3)
    r1 = StreamSampler(50, micro_batch=2, world_size=2, rank=1, seed=3)
    for b in range(30):  # crosses epochs (12 global batches per epoch)
        assert one.batch_indices(b) == r0.batch_indices(b) + r1.batch_indices(b)
    assert one.batch_indices(0) != one.batch_indices(12)  # reshuffled each epoch


def test_sampler_resumes_from_its_state():
    a = StreamSampler(20, 4, seed=1)
    a.consumed = 7
    b = StreamSampler(20, 4, seed=1)
    b.load_state_dict(a.state_dict())
    assert next(iter(b)) == a.batch_indices(7)
    with pytest.raises(Exception, match="same data and micro_batch"):
        StreamSampler(20, 2, seed=1).load_state_dict(a.state_dict())


def test_interleave_pattern():
    assert interleave_pattern({"caption": 1, "instruction": 1}) == ["caption", "instruction"]
    p = interleave_pattern({"caption": 2, "instruction": 1})
    assert sorted(p) == ["caption", "caption", "instruction"] and p[0] == "caption"
    assert interleave_pattern({"caption": 0, "instruction": 3}) == ["instruction"] * 3
    assert steps_per_stream(p, 10) == {"caption": 7, "instruction": 3}

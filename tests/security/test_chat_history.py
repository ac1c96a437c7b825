"""Class 9: chat history is limited by tokens — a long earlier turn is dropped, not a reason to fail every later
question; when the question alone does not fit, the error says the history was already dropped."""
from __future__ import annotations

import argparse
import dataclasses
import io

import pytest

from core_model import ContextLengthError


def _pipeline(max_seq_len: int = 600):
    from core_model import random_model
    from core_model.config import model_preset
    from orchestrator import VisualQAPipeline

    model = random_model(dataclasses.replace(model_preset("tiny"), max_seq_len=max_seq_len))
    return VisualQAPipeline(model, experts=[], router="none", max_new_tokens=8)


def test_a_long_earlier_turn_is_dropped_to_fit():
    qa = _pipeline()
    history = [{"role": "user", "content": "x" * 560}, {"role": "assistant", "content": "y" * 40},
               {"role": "user", "content": "short"}, {"role": "assistant", "content": "ok"}]
    result = qa.invoke({"question": "and now?", "history": history})
    assert isinstance(result.answer, str) and result.usage["prompt_tokens"] + 8 <= 600


def test_the_error_mentions_the_history_when_the_question_alone_is_too_long():
    qa = _pipeline()
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(ContextLengthError, match="history"):
        qa.invoke({"question": "q" * 700, "history": history})


def test_lav2_chat_keeps_answering_after_one_long_turn():
    from orchestrator.commands import cmd_chat

    args = argparse.Namespace(model="random:tiny", adapter=None, vision=None, device="cpu", dtype="auto",
                              weights="auto", experts="none", expert_timeout=5.0, detection_weights=None,
                              max_new_tokens=48, temperature=0.0, system=None, image=None, history_turns=4)
    out = io.StringIO()
    # random:tiny reads 4096 byte tokens: the long question fits on its own (4030 + hint + BOS + 48 new), but not
    # again as history before the next question
    long_question = "x" * 4030
    cmd_chat(args, stdin=io.StringIO(f"{long_question}\nand a short one?\n"), out=out)
    lines = [line for line in out.getvalue().splitlines() if "error:" in line]
    assert lines == [], lines

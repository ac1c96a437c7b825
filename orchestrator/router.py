"""Which experts to consult for a question, and why.

Policies:

* ``"all"`` / ``"none"`` — every expert / no expert;
* an explicit list (or ``"ocr,detection"``) — exactly those (unknown names raise :class:`UnknownExpertError`);
* ``"auto"`` — fast keyword rules on the question (text / price / read → OCR; count / where / is there →
  detection; describe → caption; who / when / facts → search). Experts without a rule (your own) are always
  consulted; when no rule matches, the image experts OCR and caption take a general look. The reading expert
  (``reader``, OCR) is consulted for every question about an image except those only its pixels answer
  (counting, describing: ``visual_only``) — what is printed on an image answers many questions no keyword
  names ("When was this purchase made?"), and search or detection may add to it, never replace it;
* ``"model"`` — the language model itself judges each expert: for "Would <expert description> help answer
  <question>? yes or no" it compares the next-token log-probabilities of yes and no. The score is calibrated
  against the same prompt with an empty question (contextual calibration), which removes the constant yes/no bias
  that small models have, so only question-specific evidence counts. One batched forward pass for all experts.

Experts that need an image are never chosen when there is no image.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AUTO_RULES", "ExpertRouter", "RouteDecision", "parse_policy"]

POLICIES = ("auto", "all", "none", "model")

#: (expert name, pattern on the lower-cased question, why)
AUTO_RULES: list[tuple[str, str, str]] = [
    ("ocr", r"\b(text|read|reads|say|says|said|written|write|writing|word|words|letter|letters|spell|sign|label|"
            r"title|name|named|number|price|prices|cost|costs|total|amount|pay|paid|receipt|bill|invoice|menu|"
            r"brand|logo|address|phone|email|date|time|form|document|page|how much|code|id|"
            # what a printed document names: a question about a cover, ticket or card asks what is printed on it
            # (search may add to OCR, never replace it: "Who wrote this book?" is answered by the cover)
            r"wrote|author|authors|authored|book|cover|publisher|published|edition|headline|poster|ticket|"
            r"seat|gate|flight|platform|card|expiry|expires|due)\b|\$|€|£",
     "the answer may be printed in the image"),
    ("detection", r"\b(how many|count|counting|number of|where|is there|are there|any|locate|located|position|"
                  r"left|right|people|persons?|person|objects?|cars?|dogs?|cats?|animals?|find)\b",
     "the question counts or locates things"),
    ("caption", r"\b(describe|description|caption|what is (happening|shown|going on|in)|what's (happening|in)|"
                r"scene|picture|photo|image|overall|summari[sz]e|what kind|colou?rs?)\b",
     "the question asks what the image shows"),
    ("local_search", r"\b(who|when|why|history|historical|fact|facts|founded|capital|born|year|wikipedia|"
                     r"tell me about|according to|notes?|documents?)\b",
     "the question needs knowledge beyond the image"),
    ("web_search", r"\b(who|when|why|history|historical|fact|facts|founded|capital|born|year|wikipedia|"
                   r"tell me about|latest|news|today)\b",
     "the question needs knowledge beyond the image"),
]
AUTO_FALLBACK = ("ocr", "caption")
#: things a detector counts (its everyday classes): "How many people ...?" is answered by the pixels
_VISIBLE = (r"(people|persons?|men|women|children|kids|faces|cars?|vehicles|buses|bus|trucks?|bikes?|bicycles?|"
            r"motorcycles?|boats?|planes?|airplanes?|trains?|animals?|dogs?|cats?|birds?|horses?|cows?|sheep|"
            r"elephants?|bears?|zebras?|giraffes?|objects?|trees?|chairs?|windows?|traffic lights?|umbrellas?|"
            r"balls?|bottles?|cups?|apples?|bananas?|oranges?)")
#: questions only the image's pixels answer (counting what is visible, describing): the reading expert is not added
#: to them. Counting anything else ("How many pallets are in the shipment?", "How many nights?") may be printed.
AUTO_VISUAL_ONLY = (rf"\b(how many (\w+ )?{_VISIBLE}|count (the )?(\w+ )?{_VISIBLE}|number of {_VISIBLE}|describe|"
                    r"description|caption|scene|what is happening|what's happening|what is going on|colou?rs?|"
                    r"look like)\b")

_YES = ("Yes", "yes", " Yes", " yes", "YES")
_NO = ("No", "no", " No", " no", "NO")


@dataclass
class RouteDecision:
    """The router's choice: ``chosen`` expert names in run order, and a reason for every expert considered."""

    policy: str
    chosen: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] | None = None
    """``model`` policy: calibrated probability that the expert helps, per expert."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_policy(policy: str | Iterable[str] | None) -> str | list[str]:
    """``"auto"``/``"all"``/``"none"``/``"model"``, or a list of expert names (from a list or ``"a,b"``)."""
    if policy is None:
        return "auto"
    if isinstance(policy, str):
        p = policy.strip()
        if p.lower() in POLICIES:
            return p.lower()
        names = [n.strip() for n in p.split(",") if n.strip()]
        if not names:
            return "none"
        return names
    return [str(n) for n in policy]


class ExpertRouter:
    """Chooses experts for a question (see the module doc for the policies).

    ``rules`` replaces :data:`AUTO_RULES` (``(expert, regex, reason)`` triples; add your own experts there to route
    them under ``auto``); ``threshold`` is the probability above which the ``model`` policy consults an expert.
    """

    def __init__(self, policy: str | Iterable[str] | None = "auto", *,
                 rules: Sequence[tuple[str, str, str]] | None = None, fallback: Sequence[str] = AUTO_FALLBACK,
                 threshold: float = 0.5, calibrate: bool = True, reader: str | None = "ocr",
                 visual_only: str = AUTO_VISUAL_ONLY):
        self.policy = parse_policy(policy)
        self.rules = [(name, re.compile(pattern, re.IGNORECASE), why) for name, pattern, why in (rules or AUTO_RULES)]
        self.fallback = tuple(fallback)
        self.threshold = threshold
        self.calibrate = calibrate
        self.reader = reader
        self.visual_only = re.compile(visual_only, re.IGNORECASE)

    def __repr__(self) -> str:
        return f"ExpertRouter(policy={self.policy!r})"

    def route(self, question: str, experts: Sequence[Any], *, has_image: bool = True, model: Any = None,
              prompt_style: str | None = None, policy: str | Iterable[str] | None = None) -> RouteDecision:
        """Decide for ``question`` among ``experts`` (tools with ``name``, ``description``, ``needs_image``)."""
        start = time.perf_counter()
        policy = self.policy if policy is None else parse_policy(policy)
        usable, reasons = [], {}
        for e in experts:
            if getattr(e, "needs_image", False) and not has_image:
                reasons[e.name] = "needs an image and there is none"
            else:
                usable.append(e)
        scores = None
        if isinstance(policy, list):
            chosen = self._explicit(policy, experts, usable, reasons)
            label = "explicit"
        elif policy == "all":
            chosen = [e.name for e in usable]
            reasons.update({n: "policy all" for n in chosen})
            label = policy
        elif policy == "none":
            chosen = []
            reasons.update({e.name: "policy none" for e in usable})
            label = policy
        elif policy == "auto":
            chosen = self._auto(question, usable, reasons)
            label = policy
        elif policy == "model":
            if model is None:
                raise ValueError("the 'model' routing policy needs the language model: route(..., model=model)")
            chosen, scores = self._model(question, usable, reasons, model, prompt_style)
            label = policy
        else:  # pragma: no cover - parse_policy only returns the above
            raise ValueError(f"unknown routing policy {policy!r}")
        return RouteDecision(label, chosen, reasons, scores, round(time.perf_counter() - start, 4))

    # -- policies -----------------------------------------------------------------------------------------
    @staticmethod
    def _explicit(names: list[str], experts: Sequence[Any], usable: Sequence[Any],
                  reasons: dict[str, str]) -> list[str]:
        from .errors import UnknownExpertError

        known = {e.name for e in experts}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UnknownExpertError(f"unknown expert(s) {unknown}; available: {', '.join(sorted(known)) or 'none'}")
        ok = {e.name for e in usable}
        chosen = [n for n in dict.fromkeys(names) if n in ok]
        reasons.update({n: "asked for explicitly" for n in chosen})
        reasons.update({e.name: "not asked for" for e in experts if e.name not in names})
        return chosen

    def _auto(self, question: str, usable: Sequence[Any], reasons: dict[str, str]) -> list[str]:
        ruled = {name for name, _, _ in self.rules}
        chosen: list[str] = []
        matched_any = False
        for e in usable:
            if e.name not in ruled:
                chosen.append(e.name)
                reasons[e.name] = "no routing rule for this expert: always consulted"
                continue
            for name, pattern, why in self.rules:
                if name == e.name and (m := pattern.search(question)):
                    chosen.append(e.name)
                    reasons[e.name] = f"{why} ('{m.group(0).strip()}')"
                    matched_any = True
                    break
            else:
                reasons[e.name] = "no rule matched the question"
        reader = next((e for e in usable if e.name == self.reader), None)
        if matched_any and reader is not None and reader.name not in chosen \
                and not self.visual_only.search(question):
            # a question about an image may be answered by what is printed on it ("When was this purchase made?",
            # "Where was this bought?"): search and detection add to reading, never replace it
            chosen.insert(0, reader.name)
            reasons[reader.name] = "a question about the image: what is printed on it may answer it"
        if not matched_any:
            for e in usable:
                if e.name in self.fallback and e.name not in chosen:
                    chosen.append(e.name)
                    reasons[e.name] = "no rule matched: general look at the image"
        return chosen

    def _model(self, question: str, usable: Sequence[Any], reasons: dict[str, str], model: Any,
               prompt_style: str | None) -> tuple[list[str], dict[str, float]]:
        if not usable:
            return [], {}
        from prompts import get_style

        style = get_style(prompt_style or model.prompt_style)
        yes, no = _answer_token_ids(model.tokenizer)
        if not yes or not no:
            raise ValueError("the tokenizer has no distinct first tokens for yes/no: use another routing policy")
        prompts = [style.format(_judge_prompt(question, e)) for e in usable]
        if self.calibrate:
            prompts += [style.format(_judge_prompt("N/A", e)) for e in usable]
        logprobs = model.next_token_logprobs(prompts)
        margins = [_logsumexp(row, yes) - _logsumexp(row, no) for row in logprobs.tolist()]
        n = len(usable)
        scores: dict[str, float] = {}
        chosen = []
        for i, e in enumerate(usable):
            margin = margins[i] - (margins[n + i] if self.calibrate else 0.0)
            p = 1.0 / (1.0 + math.exp(-margin))
            scores[e.name] = round(p, 4)
            if p > self.threshold:
                chosen.append(e.name)
                reasons[e.name] = f"the model judged it useful (p(yes)={p:.2f})"
            else:
                reasons[e.name] = f"the model judged it not useful (p(yes)={p:.2f})"
        return chosen, scores


def _judge_prompt(question: str, expert: Any) -> str:
    description = " ".join(str(getattr(expert, "description", "") or expert.name).split())
    return (f"A tool: {description}\n"
            f"A question about an image: {question}\n"
            "Would the tool's output help answer the question? Answer yes or no.")


def _answer_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """First token ids of the yes / no spellings, minus any shared by both (e.g. a leading space)."""
    def first(words: Sequence[str]) -> set[int]:
        ids = set()
        for w in words:
            enc = tokenizer.encode(w, bos=False)
            if enc:
                ids.add(enc[0])
        return ids

    yes, no = first(_YES), first(_NO)
    shared = yes & no
    return sorted(yes - shared), sorted(no - shared)


def _logsumexp(row: Sequence[float], ids: Sequence[int]) -> float:
    values = [row[i] for i in ids]
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))

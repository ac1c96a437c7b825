"""Training data: readers for caption and instruction files, tokenisation through the prompt styles with loss only
on response tokens, and a deterministic, resumable, rank-aware batch sampler.

Readers (every record is checked when the file is read; errors name the file and the record):

* ``coco``        COCO captions annotation JSON (``images`` + ``annotations``): one example per caption.
* ``caption_tsv`` the release's ``url<TAB>caption`` file (header optional), images as local paths.
* ``alpaca``      Alpaca / GPT-4-LLM JSON (or JSONL): ``instruction``, optional ``input``, ``output``.
* ``sharegpt``    ``[{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}]`` — every turn —
                  or the OpenAI shape ``{"messages": [{"role", "content"}]}``.
* ``llava``       ShareGPT records with an ``image`` path; the ``<image>`` placeholder is removed from the text
                  (the image reaches the model as visual prompt tokens).

A caption example is the conversation ``[user: CAPTION_INSTRUCTION, assistant: caption]`` with its image.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from prompts import CAPTION_INSTRUCTION, Prompt, get_style
from prompts.styles import PromptStyle

from .config import SourceSpec
from .errors import DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
          "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}
_IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Example:
    """One training record: a conversation (alternating turns, optional leading system message), the Alpaca
    ``input`` field when there is one, an optional image path, and where it came from (``file#record``)."""

    messages: tuple[tuple[str, str], ...]  # (role, content)
    source: str
    input: str | None = None
    image: str | None = None


# ============================================================================================ readers
def read_source(spec: SourceSpec, *, check_images: bool = True) -> list[Example]:
    """Read one :class:`SourceSpec` into examples."""
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist (format {spec.format}); fix data.*.path in the config")
    image_root = Path(spec.image_root).expanduser() if spec.image_root else path.parent
    readers = {"coco": read_coco, "caption_tsv": read_caption_tsv, "alpaca": read_alpaca,
               "sharegpt": read_conversations, "llava": read_conversations}
    if spec.format not in readers:
        raise DataError(f"{path}: unknown format {spec.format!r}; choose one of {sorted(readers)}")
    if spec.format in ("coco", "caption_tsv", "sharegpt", "llava"):
        examples = readers[spec.format](path, image_root, limit=spec.max_examples)
    else:
        examples = readers[spec.format](path, limit=spec.max_examples)
    if check_images:
        _check_images(examples)
    if not examples:
        raise DataError(f"{path}: no usable records (format {spec.format})")
    log.info("read %d examples from %s (%s)", len(examples), path, spec.format)
    return examples


def _check_images(examples: Sequence[Example]) -> None:
    missing = [ex for ex in examples if ex.image is not None and not Path(ex.image).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) not found, first: {missing[0].image} (record {missing[0].source}); "
                        "check image_root, or set data.check_images=false to skip this scan")


def _load_json_records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {i + 1} is not valid JSON ({e.msg})") from e
                except RecursionError:
                    raise DataError(f"{path}: line {i + 1} is not valid JSON (nested too deeply)") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except RecursionError:
        raise DataError(f"{path}: not valid JSON (nested too deeply)") from None
    return data


def _field(rec: Any, key: str, where: str, *, optional: bool = False) -> str | None:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
    value = rec.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise DataError(f"{where}: field {key!r} is {what}")
    return value


def _resolve_image(ref: str, root: Path, where: str) -> str:
    if ref.startswith(("http://", "https://")):
        raise DataError(f"{where}: image {ref!r} is a URL; download the images and point image_root at them "
                        "(training reads local files only)")
    p = Path(ref).expanduser()
    return str(p if p.is_absolute() else root / p)


def read_coco(path: Path, image_root: Path, limit: int | None = None) -> list[Example]:
    data = _load_json_records(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not a COCO captions file (expected an object with 'images' and 'annotations' "
                        "lists)")
    files: dict[Any, str] = {}
    for i, im in enumerate(data["images"]):
        where = f"{path}#images[{i}]"
        if not isinstance(im, dict) or "id" not in im:
            raise DataError(f"{where}: an image entry needs 'id' and 'file_name'")
        files[im["id"]] = _field(im, "file_name", where)  # type: ignore[assignment]
    out = []
    for i, ann in enumerate(data["annotations"]):
        if limit is not None and len(out) >= limit:
            break
        where = f"{path}#annotations[{i}]"
        caption = _field(ann, "caption", where)
        image_id = ann.get("image_id")
        if image_id not in files:
            raise DataError(f"{where}: image_id {image_id!r} is not listed in 'images'")
        out.append(caption_example(caption.strip(), _resolve_image(files[image_id], image_root, where), where))
    return out


def read_caption_tsv(path: Path, image_root: Path, limit: int | None = None) -> list[Example]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n\r")
            if not line.strip() or (n == 1 and line.split("\t")[:2] == ["url", "caption"]):
                continue
            if limit is not None and len(out) >= limit:
                break
            where = f"{path}:{n}"
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                raise DataError(f"{where}: expected 'image_path<TAB>caption', got {line[:80]!r}")
            out.append(caption_example(parts[1].strip(), _resolve_image(parts[0].strip(), image_root, where), where))
    return out


def caption_example(caption: str, image: str, source: str) -> Example:
    return Example((("user", CAPTION_INSTRUCTION), ("assistant", caption)), source, image=image)


def read_alpaca(path: Path, limit: int | None = None) -> list[Example]:
    data = _load_json_records(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: an Alpaca file is a JSON list of {{instruction, input, output}} objects")
    out = []
    for i, rec in enumerate(data[:limit] if limit is not None else data):
        where = f"{path}#{i}"
        instruction = _field(rec, "instruction", where)
        output = _field(rec, "output", where)
        inp = _field(rec, "input", where, optional=True)
        if not instruction.strip():
            raise DataError(f"{where}: empty 'instruction'")
        out.append(Example((("user", instruction), ("assistant", output)), where,
                           input=inp if inp and inp.strip() else None))
    return out


def read_conversations(path: Path, image_root: Path, limit: int | None = None) -> list[Example]:
    """ShareGPT / LLaVA (``conversations`` with from/value) or OpenAI-style ``messages`` (role/content)."""
    data = _load_json_records(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of conversation records")
    out, skipped = [], 0
    for i, rec in enumerate(data):
        if limit is not None and len(out) >= limit:
            break
        where = f"{path}#{i}" + (f" (id {rec['id']})" if isinstance(rec, dict) and "id" in rec else "")
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object with 'conversations', got {type(rec).__name__}")
        turns = rec.get("conversations", rec.get("messages"))
        if not isinstance(turns, list):
            raise DataError(f"{where}: no 'conversations' (ShareGPT/LLaVA) or 'messages' (OpenAI) list")
        messages = []
        for j, turn in enumerate(turns):
            tw = f"{where} turn {j}"
            if not isinstance(turn, dict):
                raise DataError(f"{tw}: expected an object, got {type(turn).__name__}")
            role_raw = turn.get("from", turn.get("role"))
            content = turn.get("value", turn.get("content"))
            role = _ROLES.get(str(role_raw).lower()) if role_raw is not None else None
            if role is None:
                raise DataError(f"{tw}: unknown speaker {role_raw!r}; expected one of {sorted(_ROLES)}")
            if not isinstance(content, str):
                raise DataError(f"{tw}: the text ('value' or 'content') must be a string")
            messages.append((role, content))
        image = rec.get("image")
        if image is not None:
            if not isinstance(image, str):
                raise DataError(f"{where}: 'image' must be a path string")
            image = _resolve_image(image, image_root, where)
            messages = [(r, _strip_image_token(c)) for r, c in messages]
        messages = _normalise_turns(messages)
        if not any(r == "assistant" for r, _ in messages):
            skipped += 1  # e.g. ShareGPT records cut to a single human turn
            continue
        out.append(Example(tuple(messages), where, image=image))
    if skipped:
        log.warning("%s: skipped %d conversation(s) without an assistant reply after a user turn", path, skipped)
    return out


def _strip_image_token(text: str) -> str:
    return text.replace(_IMAGE_TOKEN + "\n", "").replace("\n" + _IMAGE_TOKEN, "").replace(_IMAGE_TOKEN, "").strip()


def _normalise_turns(messages: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep an optional leading system message, drop leading assistant turns (ShareGPT has some), merge
    consecutive turns of the same speaker so every style sees strictly alternating user/assistant turns."""
    system = [messages[0]] if messages and messages[0][0] == "system" else []
    rest = [m for m in messages[len(system):] if m[0] != "system"]
    while rest and rest[0][0] != "user":
        rest = rest[1:]
    merged: list[tuple[str, str]] = []
    for role, content in rest:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + "\n\n" + content)
        else:
            merged.append((role, content))
    while merged and merged[-1][0] != "assistant":
        merged.pop()  # a trailing user turn has no reply to learn
    return system + merged


# ============================================================================================ tokenisation
def trains_every_turn(style: PromptStyle) -> bool:
    """True when ``style`` marks every assistant turn of a multi-turn conversation as a response (chat
    templates); False for single-exchange styles (Alpaca folds history into the input, trains the last reply)."""
    probe = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
             {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    return sum(flag for _, flag in style.split_for_training(probe)) == 2


def expand_turns(examples: Sequence[Example], style: PromptStyle) -> list[Example]:
    """For single-exchange styles, one example per assistant turn (with the earlier turns as history), so every
    reply of a conversation is trained, not only the last."""
    if trains_every_turn(style):
        return list(examples)
    out = []
    for ex in examples:
        idx = [i for i, (r, _) in enumerate(ex.messages) if r == "assistant"]
        if len(idx) <= 1:
            out.append(ex)
            continue
        for k, i in enumerate(idx):
            out.append(Example(ex.messages[:i + 1], f"{ex.source} reply {k}", ex.input, ex.image))
    return out


def example_segments(ex: Example, style: PromptStyle, system: str | None = None) -> list[tuple[str, bool]]:
    """The example as ``(text, is_response)`` segments rendered by ``style``."""
    messages = [{"role": r, "content": c} for r, c in ex.messages]
    if system is not None and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system})
    if ex.input is not None:
        if len(ex.messages) != 2:
            raise DataError(f"{ex.source}: an 'input' field needs a single instruction/response pair")
        if style.context_slot == "input":  # Alpaca: the input has its own "### Input:" block
            sys_msg = messages[0]["content"] if messages[0]["role"] == "system" else None
            return [(style.format(ex.messages[0][1], ex.input, system=sys_msg), False),
                    (Prompt.content(ex.messages[1][1]), True)]
        user = next(m for m in messages if m["role"] == "user")
        user["content"] = f"{user['content']}\n\n{ex.input}"
    return style.split_for_training(messages)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def tokenize_segments(tokenizer: Any, segments: Sequence[tuple[str, bool]], *, append_eos: bool
                      ) -> tuple[list[int], list[int]]:
    """Token ids and labels (``IGNORE_INDEX`` outside responses) for rendered segments.

    The joined text is tokenised ONCE (so ids match what the model sees at inference); segment boundaries are
    mapped onto tokens through the longest common prefix with the tokenisation of each text prefix, so a
    token that BPE merges across a seam goes to the segment it starts in. With ``append_eos`` (styles without a
    textual end marker) the EOS id follows each response.

    Segments rendered by a prompt style are :class:`prompts.Prompt` pieces: the data's text is content, encoded
    with special-token parsing off (a ``<|im_start|>`` inside a training example is text, exactly as at inference).
    """
    encode = getattr(tokenizer, "encode_prompt", None) or tokenizer.encode
    full = Prompt(t for t, _ in segments)
    ids = encode(full)
    cuts, prefix = [0], Prompt()
    for text, _ in segments[:-1]:
        prefix = prefix + text
        cuts.append(_common_prefix(encode(prefix), ids))
    cuts.append(len(ids))
    for i in range(1, len(cuts)):
        cuts[i] = max(cuts[i], cuts[i - 1])
    eos = tokenizer.eos_id
    if append_eos and eos is None:
        raise DataError("the prompt style appends EOS after responses but the tokenizer has no EOS token")
    out_ids: list[int] = []
    labels: list[int] = []
    for (text, is_response), a, b in zip(segments, cuts[:-1], cuts[1:]):
        piece = ids[a:b]
        out_ids += piece
        labels += piece if is_response else [IGNORE_INDEX] * len(piece)
        if is_response and append_eos:
            out_ids.append(eos)
            labels.append(eos)
    if labels and out_ids and out_ids[0] == getattr(tokenizer, "bos_id", None):
        labels[0] = IGNORE_INDEX  # BOS is never a target
    return out_ids, labels


def encode_example(ex: Example, tokenizer: Any, style: PromptStyle, max_len: int, system: str | None = None
                   ) -> tuple[list[int], list[int]]:
    ids, labels = tokenize_segments(tokenizer, example_segments(ex, style, system), append_eos=style.append_eos)
    return ids[:max_len], labels[:max_len]


# ============================================================================================ dataset
class ExampleDataset(torch.utils.data.Dataset):
    """Examples tokenised lazily (fast start on 500K captions). Images are opened and, with ``preprocess`` (the
    CLIP encoder's transform), turned into pixels in ``__getitem__`` — i.e. in DataLoader workers."""

    def __init__(self, examples: Sequence[Example], tokenizer: Any, style: str | PromptStyle, max_len: int,
                 system: str | None = None, name: str = "data",
                 preprocess: Callable[[list], torch.Tensor] | None = None):
        self.examples = list(examples)
        self.tokenizer = tokenizer
        self.style = get_style(style)
        self.max_len = max_len
        self.system = system
        self.name = name
        self.preprocess = preprocess
        self._warned_empty = False

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        try:
            ids, labels = encode_example(ex, self.tokenizer, self.style, self.max_len, self.system)
        except DataError:
            raise
        except Exception as e:  # prompt-style errors etc.: name the record
            raise DataError(f"{ex.source}: cannot render with prompt style {self.style.name!r}: {e}") from e
        if all(x == IGNORE_INDEX for x in labels[1:]) and not self._warned_empty:
            self._warned_empty = True
            log.warning("%s: no response tokens within data.max_len=%d (first case: %s); such examples add "
                        "nothing to the loss — raise max_len", self.name, self.max_len, ex.source)
        pixels = None
        if ex.image is not None:
            if self.preprocess is None:
                raise DataError(f"{ex.source}: the record has an image but the model has no vision encoder "
                                "(set model.vision)")
            from core_model.errors import ImageError
            from core_model.images import open_image

            try:
                pixels = self.preprocess([open_image(Path(ex.image))])[0]  # a Path: never a URL or base64
            except ImageError as e:
                raise DataError(f"{ex.source}: {e}") from e
        return {"ids": ids, "labels": labels, "pixels": pixels, "source": ex.source}


@dataclass
class Batch:
    """A padded micro-batch. ``targets`` are the labels shifted left (position t predicts token t+1)."""

    tokens: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T), IGNORE_INDEX where no loss
    pixels: torch.Tensor | None  # (len(image_rows), 3, H, W) CLIP inputs of the rows that have an image, or None
    sources: list[str] = field(default_factory=list)
    image_rows: list[int] = field(default_factory=list)

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> "Batch":
        pixels = None if self.pixels is None else self.pixels.to(device, non_blocking=True)
        return Batch(self.tokens.to(device, non_blocking=True), self.targets.to(device, non_blocking=True), pixels,
                     self.sources, self.image_rows)


def collate(items: Sequence[dict[str, Any]], pad_id: int) -> Batch:
    """Right-pad (causal attention: padding after a sequence never influences it). Pixels are stacked for the rows
    that have an image (``image_rows``); text-only rows of a mixed batch get no visual tokens at all — the release
    fed them a black image instead, which made a row's loss depend on its batch-mates."""
    T = max(len(it["ids"]) for it in items)
    tokens = torch.full((len(items), T), pad_id, dtype=torch.long)
    targets = torch.full((len(items), T), IGNORE_INDEX, dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it["ids"])
        tokens[i, :n] = torch.tensor(it["ids"], dtype=torch.long)
        if n > 1:
            targets[i, :n - 1] = torch.tensor(it["labels"][1:], dtype=torch.long)
    rows = [i for i, it in enumerate(items) if it.get("pixels") is not None]
    pixels = torch.stack([items[i]["pixels"] for i in rows]) if rows else None
    return Batch(tokens, targets, pixels, [it["source"] for it in items], rows)


# ============================================================================================ sampling
class StreamSampler:
    """Deterministic global batches for one stream, resumable, split across ranks.

    Global batch ``b`` is the slice ``[b*G, (b+1)*G)`` of epoch ``e``'s permutation (seeded by ``seed`` and ``e``),
    G = ``micro_batch * world_size``; rank r takes rows ``[r*micro_batch, (r+1)*micro_batch)``. One process with
    micro-batch 4 therefore sees exactly the rows that two processes with micro-batch 2 see together. The last
    incomplete global batch of an epoch is dropped. State = number of global batches consumed.
    """

    def __init__(self, n: int, micro_batch: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, name: str = "data"):
        self.n, self.micro_batch, self.world_size, self.rank = n, micro_batch, world_size, rank
        self.seed, self.shuffle, self.name = seed, shuffle, name
        self.global_batch = micro_batch * world_size
        if n < self.global_batch:
            raise DataError(f"{name}: {n} training examples are fewer than one global batch "
                            f"(micro_batch {micro_batch} x world size {world_size}); add data or lower micro_batch")
        self.per_epoch = n // self.global_batch
        self.consumed = 0
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.n, generator=g).tolist()
            else:
                self._perm = list(range(self.n))
            self._perm_epoch = epoch
        return self._perm

    def batch_indices(self, b: int) -> list[int]:
        """This rank's rows of global batch ``b``."""
        epoch, k = divmod(b, self.per_epoch)
        perm = self._permutation(epoch)
        start = k * self.global_batch + self.rank * self.micro_batch
        return perm[start:start + self.micro_batch]

    def __iter__(self) -> Iterator[list[int]]:
        b = self.consumed
        while True:
            yield self.batch_indices(b)
            b += 1

    def epoch(self) -> float:
        return self.consumed / self.per_epoch

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "n": self.n, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("n") != self.n or state.get("global_batch") != self.global_batch:
            from .errors import CheckpointError

            raise CheckpointError(
                f"{self.name}: the checkpoint was made with {state.get('n')} examples and a global batch of "
                f"{state.get('global_batch')}, this run has {self.n} and {self.global_batch}: resume with the same "
                "data and micro_batch x world size")
        self.consumed = int(state["consumed"])


def split_validation(examples: list[Example], n_val: int, seed: int, name: str) -> tuple[list[Example], list[Example]]:
    """Hold out ``n_val`` examples (a seeded choice, the same on every rank)."""
    if n_val <= 0:
        return examples, []
    if n_val >= len(examples):
        raise DataError(f"{name}: data.val_examples={n_val} leaves no training examples (have {len(examples)})")
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(len(examples), generator=g).tolist()
    val_idx = set(perm[:n_val])
    return ([ex for i, ex in enumerate(examples) if i not in val_idx],
            [examples[i] for i in sorted(val_idx)])


def interleave_pattern(weights: dict[str, int]) -> list[str]:
    """Smooth weighted round-robin: ``{caption: 2, instruction: 1}`` -> caption, instruction, caption.

    Deterministic, so every rank takes the same kind of step and a resumed run continues the same sequence.
    """
    active = {k: w for k, w in weights.items() if w > 0}
    total = sum(active.values())
    current = {k: 0 for k in active}
    out = []
    for _ in range(total):
        for k in active:
            current[k] += active[k]
        pick = max(active, key=lambda k: (current[k], -list(active).index(k)))
        current[pick] -= total
        out.append(pick)
    return out


def steps_per_stream(pattern: list[str], steps: int) -> dict[str, int]:
    full, rest = divmod(steps, len(pattern))
    counts = {k: full * pattern.count(k) for k in set(pattern)}
    for k in pattern[:rest]:
        counts[k] += 1
    return counts


def estimated_epochs(n: int, global_batch: int, batches: int) -> float:
    return batches * global_batch / max(n, 1) if n else math.inf

"""Tokenizers: sentencepiece (LLaMA-1/2), tokenizer.json (HF), and the GGUF-embedded BPE (SmolLM2).

All expose the same small interface the generator and the prompt styles need.

Control tokens (``<|im_start|>``, ``<|eot_id|>``, ``</s>`` ...) may come only from a prompt template, never from
content (user or tool messages, expert output, training data). Three ways in:

* :meth:`Tokenizer.encode` ``(text)``: a developer-formatted string; control tokens written in it are parsed
  (HF tokenizers), as they always were. ``parse_special=False`` encodes the text as plain text instead.
* :meth:`Tokenizer.encode_pieces` ``([(text, template), ...])``: control tokens are recognised only inside
  template pieces; content pieces are encoded with special-token parsing off. The text between two template
  control tokens is encoded in one run, so a prompt whose content holds no control-token text gets exactly the
  ids :meth:`encode` gives its joined text.
* :meth:`Tokenizer.encode_prompt` ``(prompt)``: ``encode_pieces(prompt.pieces)`` for a segmented prompt (a ``str``
  with a ``pieces`` attribute, e.g. ``prompts.Prompt``, what every prompt style renders), ``encode(prompt)`` for a
  plain ``str``.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import ModelLoadError

log = logging.getLogger(__name__)

_PLAIN_LOCK = threading.Lock()

# Chat end markers that should stop generation whenever the vocabulary has them.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")


def style_from_template(template: str | None) -> str:
    """Guess the prompt style name (see the ``prompts`` package) from a chat template."""
    if not template:
        return "alpaca"
    if "<|im_start|>" in template:
        return "smollm2" if "SmolLM" in template else "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    if "[INST]" in template:
        return "llama2"
    return "alpaca"


class Tokenizer:
    """Common interface. ``encode`` adds BOS when the model expects it (``add_bos``)."""

    bos_id: int | None = None
    eos_ids: frozenset[int] = frozenset()
    pad_id: int = 0
    add_bos: bool = True
    chat_template: str | None = None
    source: str = ""

    @property
    def default_prompt_style(self) -> str:
        return style_from_template(self.chat_template)

    @property
    def eos_id(self) -> int | None:
        return min(self.eos_ids) if self.eos_ids else None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, bos: bool | None = None, *, parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` (BOS first when ``add_bos``/``bos``). ``parse_special=False``: control-token text
        in ``text`` is encoded as ordinary text (for untrusted content)."""
        ids = self._encode_text(text) if parse_special else self._encode_plain(text)
        return self._with_bos(ids, bos)

    def encode_pieces(self, pieces: Iterable[tuple[str, bool]], bos: bool | None = None) -> list[int]:
        """Token ids of consecutive ``(text, template)`` pieces: control tokens only where ``template`` is True."""
        pattern = self._control_pattern()
        ids: list[int] = []
        run: list[str] = []  # text since the last template control token, encoded in one go
        for text, is_template in pieces:
            if not text:
                continue
            if not is_template or pattern is None:
                run.append(text)
                continue
            pos = 0
            for m in pattern.finditer(text):
                run.append(text[pos:m.start()])
                ids += self._encode_plain("".join(run))
                run = []
                ids.append(self._controls[m.group(0)])
                pos = m.end()
            run.append(text[pos:])
        ids += self._encode_plain("".join(run))
        return self._with_bos(ids, bos)

    def encode_prompt(self, prompt: str, bos: bool | None = None) -> list[int]:
        """A segmented prompt (``prompt.pieces``) through :meth:`encode_pieces`, a plain ``str`` through
        :meth:`encode` (a developer-formatted prompt)."""
        pieces = getattr(prompt, "pieces", None)
        if pieces is None:
            return self.encode(prompt, bos)
        return self.encode_pieces(pieces, bos)

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    # -- what subclasses provide ------------------------------------------------------------------------------
    def _encode_text(self, text: str) -> list[int]:
        """Developer text, control tokens parsed where the backend parses them; no BOS."""
        if type(self).encode is not Tokenizer.encode:  # a subclass written against the older encode-only API
            return list(self.encode(text, bos=False))
        raise NotImplementedError(f"{type(self).__name__} must implement _encode_text and _encode_plain")

    def _encode_plain(self, text: str) -> list[int]:
        """Text with special-token parsing off; no BOS. Subclasses that can parse control tokens override it."""
        return self._encode_text(text)

    def control_tokens(self) -> dict[str, int]:
        """The control-token strings a template may write, with their ids."""
        return {}

    @property
    def _controls(self) -> dict[str, int]:
        cached = self.__dict__.get("_controls_cache")
        if cached is None:
            cached = self.__dict__["_controls_cache"] = dict(self.control_tokens())
        return cached

    def _control_pattern(self) -> re.Pattern[str] | None:
        if "_control_re" not in self.__dict__:
            names = sorted(self._controls, key=len, reverse=True)  # longest first: <|im_start|> before <|im
            self.__dict__["_control_re"] = re.compile("|".join(map(re.escape, names))) if names else None
        return self.__dict__["_control_re"]

    def _with_bos(self, ids: list[int], bos: bool | None) -> list[int]:
        if (self.add_bos if bos is None else bos) and self.bos_id is not None:
            return [self.bos_id, *ids]
        return ids

    def _collect_eos(self, explicit: Iterable[int | None]) -> frozenset[int]:
        ids = {i for i in explicit if i is not None}
        for tok in _END_TOKENS:
            tid = self.token_to_id(tok)
            if tid is not None:
                ids.add(tid)
        return frozenset(ids)


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` plus the few settings that live in tokenizer_config.json."""

    def __init__(self, tok: Any, *, bos_token: str | None, eos_token: str | None, add_bos: bool,
                 chat_template: str | None, source: str, pad_token: str | None = None):
        self._tok = tok
        self.source = source
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.bos_id = tok.token_to_id(bos_token) if bos_token else None
        eos = tok.token_to_id(eos_token) if eos_token else None
        self.eos_ids = self._collect_eos([eos])
        pad = tok.token_to_id(pad_token) if pad_token else None
        self.pad_id = pad if pad is not None else (eos if eos is not None else 0)
        # plain-text encoding (_encode_plain) switches the tokenizer's encode_special_tokens for one call when every
        # added token is special (the usual case): no copy of the tokenizer to build (its JSON round trip took
        # ~0.37 s of the first extraction in every `lav2 ask`); the lock keeps other encodes out meanwhile
        self._mode_lock = threading.Lock()
        self._all_special = all(t.special for t in tok.get_added_tokens_decoder().values())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def _encode_text(self, text: str) -> list[int]:
        with self._mode_lock:
            return self._tok.encode(text, add_special_tokens=False).ids

    def _encode_plain(self, text: str) -> list[int]:
        if not text:
            return []
        if self._all_special:
            with self._mode_lock:
                before = self._tok.encode_special_tokens
                self._tok.encode_special_tokens = True
                try:
                    return self._tok.encode(text, add_special_tokens=False).ids
                finally:
                    self._tok.encode_special_tokens = before
        return self._plain_tokenizer().encode(text, add_special_tokens=False).ids

    def _plain_tokenizer(self) -> Any:
        """A copy of the tokenizer that reads every added token's text as ordinary text.

        ``encode_special_tokens`` covers special added tokens; added tokens not marked special (user-defined
        ones, which some GGUF conversions use for chat markers) are turned special in the copy so they are
        covered too.
        """
        plain = self.__dict__.get("_plain")
        if plain is not None:
            return plain
        with _PLAIN_LOCK:
            plain = self.__dict__.get("_plain")
            if plain is None:
                from tokenizers import Tokenizer as _Tok

                spec = json.loads(self._tok.to_str())
                for added in spec.get("added_tokens") or []:
                    added["special"] = True
                plain = _Tok.from_str(json.dumps(spec))
                plain.encode_special_tokens = True
                self.__dict__["_plain"] = plain
        return plain

    def control_tokens(self) -> dict[str, int]:
        return {t.content: i for i, t in self._tok.get_added_tokens_decoder().items()}

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / "tokenizer.json"))
        meta = {
            "bos_token": self._tok.id_to_token(self.bos_id) if self.bos_id is not None else None,
            "eos_token": self._tok.id_to_token(self.eos_id) if self.eos_id is not None else None,
            "pad_token": self._tok.id_to_token(self.pad_id),
            "add_bos_token": self.add_bos,
            "chat_template": self.chat_template,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def from_dir(cls, directory: Path) -> "HFTokenizer":
        from tokenizers import Tokenizer as _Tok

        path = directory / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"no tokenizer.json in {directory}")
        try:
            tok = _Tok.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the Rust side raises a bare Exception for a malformed file
            raise ModelLoadError(f"{path}: not a readable tokenizer.json ({str(e).splitlines()[0][:200]})") from e
        cfg: dict[str, Any] = {}
        if (directory / "tokenizer_config.json").is_file():
            try:
                cfg = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ModelLoadError(f"{directory / 'tokenizer_config.json'}: invalid JSON ({e})") from e
            except RecursionError:
                raise ModelLoadError(f"{directory / 'tokenizer_config.json'}: invalid JSON (nested too deeply)"
                                     ) from None
            if not isinstance(cfg, dict):
                raise ModelLoadError(f"{directory / 'tokenizer_config.json'}: must be a JSON object")

        def _tok_str(v: Any) -> str | None:
            return v.get("content") if isinstance(v, dict) else v

        template = cfg.get("chat_template")
        if template is None and (directory / "chat_template.jinja").is_file():
            template = (directory / "chat_template.jinja").read_text()
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        bos = _tok_str(cfg.get("bos_token"))
        add_bos = bool(cfg.get("add_bos_token", bos is not None and _has_bos_post_processor(tok)))
        return cls(tok, bos_token=bos, eos_token=_tok_str(cfg.get("eos_token")), add_bos=add_bos,
                   chat_template=template, source=str(path), pad_token=_tok_str(cfg.get("pad_token")))


def _has_bos_post_processor(tok: Any) -> bool:
    """LLaMA-3 style tokenizer.json adds BOS in its post-processor; we add it ourselves instead."""
    try:
        return "TemplateProcessing" in json.loads(tok.to_str()).get("post_processor", {}).get("type", "")
    except Exception:  # noqa: BLE001 - purely a heuristic on a tokenizer file
        return False


class SentencePieceTokenizer(Tokenizer):
    """Meta's LLaMA-1/2 ``tokenizer.model``."""

    def __init__(self, path: Path):
        try:
            import sentencepiece as spm
        except ImportError as e:  # pragma: no cover - a hard dependency
            raise ModelLoadError("sentencepiece is not installed: pip install sentencepiece") from e
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(path))
        except Exception as e:  # noqa: BLE001 - sentencepiece raises bare RuntimeError/OSError
            raise ModelLoadError(f"{path} is not a sentencepiece model ({e}); LLaMA-3 ships a tiktoken file: "
                                 "use its Hugging Face directory (tokenizer.json) instead") from e
        self.source = str(path)
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
        eos = self._sp.eos_id() if self._sp.eos_id() >= 0 else None
        self.eos_ids = frozenset({eos} if eos is not None else set())
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else (eos or 0)
        self.add_bos = True
        self._path = Path(path)

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    def _encode_text(self, text: str) -> list[int]:
        return list(self._sp.encode(text))  # sentencepiece never reads control pieces (<s>, </s>) from text

    def _encode_plain(self, text: str) -> list[int]:
        return list(self._sp.encode(text)) if text else []

    def control_tokens(self) -> dict[str, int]:
        """``<s>``, ``</s>`` (and any other control piece): a template's textual ``</s><s>`` becomes the ids."""
        return {self._sp.id_to_piece(i): i for i in range(self._sp.vocab_size()) if self._sp.is_control(i)}

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        ids = [i for i in ids if not (skip_special and (i in self.eos_ids or i == self.bos_id))]
        return self._sp.decode(ids)

    def token_to_id(self, token: str) -> int | None:
        tid = self._sp.piece_to_id(token)
        return tid if tid != self._sp.unk_id() or token == self._sp.id_to_piece(tid) else None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tokenizer.model").write_bytes(self._path.read_bytes())


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens (ids 0-255) plus BOS/EOS/PAD: a real, lossless tokenizer for tiny test models."""

    def __init__(self, chat_template: str | None = None):
        self.bos_id, self.pad_id = 256, 258
        self.eos_ids = frozenset({257})
        self.add_bos = True
        self.chat_template = chat_template
        self.source = "bytes"

    @property
    def vocab_size(self) -> int:
        return 259

    def _encode_text(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))  # no control token has a text form here

    def _encode_plain(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        b = token.encode("utf-8")
        return b[0] if len(b) == 1 else None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tokenizer_config.json").write_text(json.dumps({"byte_tokenizer": True}))


def tokenizer_from_gguf_fields(fields: dict[str, Any], source: str) -> HFTokenizer:
    """Build a ``tokenizers`` BPE tokenizer from a GGUF file's ``tokenizer.ggml.*`` metadata.

    Supports the ``gpt2`` byte-level BPE family (SmolLM2, LLaMA-3, Qwen). The pre-tokenizer follows the
    GGUF ``pre`` tag: ``smollm`` splits digits individually, as SmolLM2's tokenizer.json does.
    """
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as _Tok

    kind = fields.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(f"{source}: GGUF tokenizer model {kind!r} is not supported (only 'gpt2' byte-level "
                             "BPE); pass tokenizer=<directory with tokenizer.json or tokenizer.model>")
    tokens: list[str] = fields["tokenizer.ggml.tokens"]
    types: list[int] = fields.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges") or []]  # none: bytes only
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = _Tok(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    pre = fields.get("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("llama3", "llama-bpe"):
        pat = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pat), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        if pre not in ("default", "gpt2"):
            log.warning("GGUF pre-tokenizer %r not known; using GPT-2 byte-level rules", pre)
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # control (3) and user-defined (4) tokens must match as whole units, never be split by BPE
    special = [AddedToken(t, special=(ty == 3), normalized=False) for t, ty in zip(tokens, types) if ty in (3, 4)]
    if special:
        tok.add_special_tokens([a for a in special if a.special])
        tok.add_tokens([a for a in special if not a.special])

    def _name(key: str) -> str | None:
        tid = fields.get(key)
        return tokens[tid] if tid is not None and 0 <= tid < len(tokens) else None

    return HFTokenizer(tok, bos_token=_name("tokenizer.ggml.bos_token_id"),
                       eos_token=_name("tokenizer.ggml.eos_token_id"),
                       add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
                       chat_template=fields.get("tokenizer.chat_template"), source=source,
                       pad_token=_name("tokenizer.ggml.padding_token_id"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer from a directory (tokenizer.json / tokenizer.model) or a tokenizer.model file."""
    p = Path(path)
    if p.is_file():
        if p.name == "tokenizer.json":
            return HFTokenizer.from_dir(p.parent)
        return SentencePieceTokenizer(p)
    if (p / "tokenizer.json").is_file():
        return HFTokenizer.from_dir(p)
    if (p / "tokenizer.model").is_file():
        return SentencePieceTokenizer(p / "tokenizer.model")
    raise ModelLoadError(f"no tokenizer found at {p}: expected tokenizer.json or tokenizer.model")

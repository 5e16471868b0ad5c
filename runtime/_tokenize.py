"""Tokenization for the runtime: one batch call, no padding (batches are padded to their own longest)."""

from __future__ import annotations

import json
import re
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class Tokenized:
    """Token ids of a list of texts, unpadded, truncated to the model's max_seq_length."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    lengths: np.ndarray  # int64 [n], tokens per text after truncation
    truncated: np.ndarray  # bool [n], True where the text had more tokens than max_seq_length

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, indices: Sequence[int]) -> Tokenized:
        return Tokenized(
            ids=[self.ids[i] for i in indices],
            type_ids=[self.type_ids[i] for i in indices],
            lengths=self.lengths[list(indices)],
            truncated=self.truncated[list(indices)],
        )


def concat(parts: Sequence[Tokenized]) -> Tokenized:
    """One ``Tokenized`` of several, in order."""
    return Tokenized(
        ids=[ids for p in parts for ids in p.ids],
        type_ids=[t for p in parts for t in p.type_ids],
        lengths=np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64),
        truncated=np.concatenate([p.truncated for p in parts]) if parts else np.zeros(0, bool),
    )


def load_tokenizer(path: Path, max_seq_length: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_seq_length)
    return tok


def token_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None) -> list[slice]:
    """Cut rows sorted longest first into batches of at most ``batch_size`` rows and, with
    ``max_tokens``, at most that many padded tokens (rows x the batch's first, longest row); a
    single row longer than the budget runs alone."""
    out: list[slice] = []
    start, n = 0, len(lengths)
    while start < n:
        rows = batch_size
        if max_tokens is not None:
            rows = min(rows, max(1, max_tokens // max(int(lengths[start]), 1)))
        out.append(slice(start, min(start + rows, n)))
        start += rows
    return out


def share_batches(lengths: np.ndarray, pieces: list[slice], parts: int) -> list[slice]:
    """``pieces`` of rows sorted longest first (``token_batches``), cut further until there are
    ``parts`` of them or each holds one row: the piece of most padded tokens is cut in two where its
    halves' padded tokens are closest. For concurrent runs (streams), so that a call of fewer batches
    than streams still keeps every stream busy."""
    out = list(pieces)
    while len(out) < parts:
        cuttable = [i for i, s in enumerate(out) if s.stop - s.start > 1]
        if not cuttable:
            break
        i = max(cuttable, key=lambda k: (out[k].stop - out[k].start) * int(lengths[out[k].start]))
        s = out[i]
        cut = min(range(s.start + 1, s.stop),
                  key=lambda a: max((a - s.start) * int(lengths[s.start]), (s.stop - a) * int(lengths[a])))  # fmt: skip
        out[i : i + 1] = [slice(s.start, cut), slice(cut, s.stop)]
    return out


def flat_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None) -> list[slice]:
    """Cut rows kept in their order into batches of at most ``batch_size`` rows and ``max_tokens``
    tokens in all (no padding: a flat batch holds exactly its rows' tokens)."""
    out: list[slice] = []
    ends = np.cumsum(lengths)
    start, n = 0, len(lengths)
    while start < n:
        stop = min(start + batch_size, n)
        if max_tokens is not None:
            before = int(ends[start - 1]) if start else 0
            fit = int(np.searchsorted(ends, before + max_tokens, side="right"))
            stop = max(start + 1, min(stop, fit))
        out.append(slice(start, stop))
        start = stop
    return out


def flat_ids(tokenizer: Tokenizer, texts: list[str], given: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All texts' token ids in one int64 array, and the tokens per text (for static-embedding bundles:
    no Encoding kept, no padding, no per-batch work). ``given``: see ``tokenize``."""
    ids = [e.ids for e in truncated_encodings(tokenizer, _without_offsets(tokenizer), texts, given)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _without_offsets(tokenizer: Tokenizer) -> Any:
    """The tokenizer's batch call that skips the characters' offsets (13-15% less CPU on MiniLM's
    WordPiece; a one-off measurement), where it has one. Not for pairs: tokenizers 0.23's
    ``encode_batch_fast`` gives a pair's second text type id 0 where no post-processor sets it."""
    return getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)


def tokenize(
    tokenizer: Tokenizer, texts: Sequence[str] | Sequence[tuple[str, str]], given: Sequence[str] | None = None
) -> Tokenized:
    """Texts, or (first, second) pairs encoded together as the model's pair template says (for
    rerankers), truncated longest-first to the tokenizer's max length, as transformers does.
    ``given``: the caller's texts, before a prompt was put in front, which an error names."""
    pairs = bool(texts) and isinstance(texts[0], tuple)
    encodings = truncated_encodings(tokenizer, tokenizer.encode_batch if pairs else _without_offsets(tokenizer), texts, given)
    ids = [e.ids for e in encodings]
    return Tokenized(
        ids=ids,
        type_ids=[e.type_ids for e in encodings],
        lengths=np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)),
        truncated=np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids)),
    )


def pad_batch(
    tok: Tokenized, rows: np.ndarray, pad_id: int, with_type_ids: bool, left: bool = False
) -> dict[str, np.ndarray]:
    """Inputs for the rows ``rows`` of ``tok``, padded to the longest of them (on the left with ``left``)."""
    if len(rows) == 1 and tok.lengths[rows[0]] > 0:  # one text (batch-1 latency): nothing to pad
        i = int(rows[0])
        ids = np.asarray(tok.ids[i], dtype=np.int64).reshape(1, -1)
        one = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if with_type_ids:
            one["token_type_ids"] = np.asarray(tok.type_ids[i], dtype=np.int64).reshape(1, -1)
        return one
    lengths = tok.lengths[rows]
    width = max(int(lengths.max()), 1)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64) if with_type_ids else None
    for r, i in enumerate(rows):
        n = int(lengths[r])
        cols = slice(width - n, width) if left else slice(0, n)
        ids[r, cols] = tok.ids[i]
        if types is not None:
            types[r, cols] = tok.type_ids[i]
    positions = np.arange(width)[None, :]
    real = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]
    mask = real.astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        feed["token_type_ids"] = types
    return feed


# A text longer than this many characters per token of the window is tokenized from a prefix first.
PREFIX_CHARS_PER_TOKEN = 16


def truncated_encodings(
    tokenizer: Tokenizer, encode: Any, texts: Sequence[str] | Sequence[tuple[str, str]], given: Sequence[str] | None
) -> list[Any]:
    """``encoded(encode, texts, given)`` under the tokenizer's truncation, without tokenizing the whole
    of a long text: such a text is tokenized from its prefix up to the last space before
    ``PREFIX_CHARS_PER_TOKEN`` characters per token of the window, after a character that is not a
    space (text without spaces: before a ``MARK_CUT``, first within ``MARK_CHARS_PER_TOKEN``
    characters per token). Pre-tokenizers split there, so the prefix's tokens are the text's first
    tokens; where the prefix already fills the window (it overflows), the window is the text's. A
    text whose prefix does not (tokens of many characters) is tokenized from its next prefix, then
    whole; one with no such place in a prefix's second half, whole. A 100,000-character document
    costs what its window costs, not 25,000 tokens' encodings. For a pair (rerankers) see
    ``_pair_prefixes``."""
    trunc = tokenizer.truncation
    limit = _prefix_chars(trunc)
    if limit is None or not texts:
        return list(encoded(encode, texts, given))
    if isinstance(texts[0], tuple):
        assert trunc is not None  # a limit comes from it
        return list(encoded(encode, _pair_prefixes(tokenizer, trunc, encode, texts, limit), given))
    short = limit // PREFIX_CHARS_PER_TOKEN * MARK_CHARS_PER_TOKEN
    prefixes: dict[int, list[str]] = {}  # each long text's prefixes, shortest first
    for i, t in enumerate(texts):
        if isinstance(t, str) and len(t) > short:
            found = _prefixes(t, limit, short, tokenizer)
            if found:
                prefixes[i] = found
    if not prefixes:
        return list(encoded(encode, texts, given))
    cut: list[Any] = list(texts)
    for i, found in prefixes.items():
        cut[i] = found[0]
    out = list(encoded(encode, cut, given))
    tried = dict.fromkeys(prefixes, 0)  # the prefix each text was last tokenized from
    while redo := [i for i, k in tried.items() if not out[i].overflowing]:  # short of the window: the next
        again: list[Any] = []
        for i in redo:
            tried[i] += 1
            if tried[i] < len(prefixes[i]):
                again.append(prefixes[i][tried[i]])
            else:
                again.append(texts[i])
                del tried[i]
        for i, e in zip(redo, encoded(encode, again, None if given is None else [given[i] for i in redo]), strict=True):
            out[i] = e
    return out


# a text without spaces is first tokenized from this many characters per token of the window (cut
# at a ``MARK_CUT``): about one token a character in Chinese and Japanese
MARK_CHARS_PER_TOKEN = 2


def _prefixes(text: str, limit: int, short: int, tokenizer: Tokenizer) -> list[str]:
    """``text``'s prefixes to tokenize it from, shortest first (``_prefix`` at ``short`` characters
    with marks alone, then at ``limit``); none where it has no place to cut."""
    first = _last_mark_cut(text, short // 2 + 1, short + 1, tokenizer)
    out = [text[:first]] if first is not None else []
    if len(text) > limit:
        at = _prefix(text, limit, tokenizer)
        if at is not text and (not out or len(at) > len(out[0])):
            out.append(at)
    return out


def _pair_prefixes(tokenizer: Tokenizer, trunc: dict[str, Any], encode: Any, pairs: Sequence[Any],
                   limit: int) -> Sequence[Any]:  # fmt: skip
    """``pairs`` with a prefix in place of the long side of each pair of which one side is long, where
    that gives the whole pair's encoding. Longest-first truncation keeps, of each side, a number of
    tokens that depends on the shorter side's length and on which side is longer: so the short side
    must fit the pair's budget (then it is the shorter either way) and the prefix must overflow it
    alone. Both are checked by encoding the short side and the prefix alone. A pair of two long
    sides, or any pair under another truncation strategy, is tokenized whole."""
    if trunc.get("strategy", "longest_first") != "longest_first":
        return pairs
    which, shorts, prefixes = [], [], []
    for i, pair in enumerate(pairs):
        if (len(pair[0]) > limit) != (len(pair[1]) > limit):
            side = int(len(pair[1]) > limit)
            prefix = _prefix(pair[side], limit, tokenizer)
            if prefix is not pair[side]:
                which.append((i, side, prefix))
                shorts.append(pair[1 - side])
                prefixes.append(prefix)
    if not which:
        return pairs
    try:
        alone = encoded(encode, shorts + prefixes, None)
    except ValueError:  # a text it cannot take: the whole call names it
        return pairs
    post = tokenizer.post_processor
    budget = int(trunc["max_length"]) - (post.num_special_tokens_to_add(True) if post is not None else 0)
    single = post.num_special_tokens_to_add(False) if post is not None else 0
    out = list(pairs)
    for k, (i, side, prefix) in enumerate(which):
        short, long = alone[k], alone[len(which) + k]
        if not short.overflowing and len(short.ids) - single <= budget and long.overflowing:
            out[i] = (out[i][0], prefix) if side else (prefix, out[i][1])
    return out


def _prefix_chars(t: dict[str, Any] | None) -> int | None:
    """The length past which a text is tokenized from a prefix, under truncation ``t`` (a
    tokenizer's ``truncation``; None: no right truncation to go by)."""
    if not t or t.get("direction", "right") != "right" or not t.get("max_length"):
        return None
    return int(t["max_length"]) * PREFIX_CHARS_PER_TOKEN


def _prefix(text: str, limit: int, tokenizer: Tokenizer) -> str:
    """``text`` up to its last space in ``[limit / 2, limit]`` that follows a character that is not
    whitespace, else up to its last ``MARK_CUT`` there that the tokenizer allows (``prefix_mark_cuts``,
    probed only then); ``text`` itself where there is none."""
    at = text.rfind(" ", limit // 2, limit + 1)
    while at > limit // 2 and text[at - 1].isspace():
        at = text.rfind(" ", limit // 2, at)
    if at > limit // 2:
        return text[:at]
    cut = _last_mark_cut(text, limit // 2 + 1, limit + 1, tokenizer)
    return text if cut is None else text[:cut]


def _last_mark_cut(text: str, start: int, end: int, tokenizer: Tokenizer) -> int | None:
    """The last place in ``text[start:end]`` where a prefix may end before a ``MARK_CUT`` for this
    tokenizer (``prefix_mark_cuts``, probed only where a text without spaces needs it), or None."""
    if not MARK_CUT.search(text, start, end):
        return None
    cuts = prefix_mark_cuts(tokenizer)
    if cuts is None:
        return None
    for m in reversed(list(MARK_CUT.finditer(text, start, end))):
        at = m.start()
        if text[at] not in cuts.marks:
            continue
        # the character before, normalized in context (where it composes with those before it)
        if not cuts.refused or _normalized(tokenizer, text[max(at - 4, 0) : at])[-1:] not in cuts.refused:
            return at
    return None


def _normalized(tok: Tokenizer, text: str) -> str:
    return tok.normalizer.normalize_str(text) if tok.normalizer is not None else text


# Text without spaces (Chinese, Japanese) may also be cut before a CJK sentence or clause mark
# (。！？，、；：) that follows a letter or a digit: there a pre-tokenizer ends a piece and starts the
# next one for BERT (each mark and each ideograph its own word) and for GPT-2's and GPT-4's
# byte-level splits (a run of letters or digits ends there; the mark begins the next piece, alone or
# with the letters after it). Not so for Metaspace (a text without spaces is one word) or where each
# call's text gets a mark in front (``add_prefix_space``, ``Prepend``): a probe decides per tokenizer
# (``splits_at_marks``). A prefix (truncation) asks less than pieces do: only that the text's first
# tokens be the prefix's, which ``prefix_mark_cuts`` also finds for SentencePiece's Unigram and BPE
# models over a whole word (XLM-R's, Llama's) from their vocabularies.
MARKS = "\u3002\uff01\uff1f\uff0c\u3001\uff1b\uff1a"
MARK_CUT = re.compile(f"(?<=[^\\W_])(?=[{MARKS}])")
_MARK_PROBES = [("東京は日本の首都です", "。大阪は大きい町です"), ("我们今天去北京", "，明天回上海。"),
                ("价格是100元", "！太贵了"), ("abc", "；def")]  # fmt: skip


def splits_at_marks(tok: Tokenizer) -> bool:
    """Whether the tokenizer gives a text the tokens and offsets of its two pieces where the second
    begins at a ``MARK_CUT`` (``marks_probe`` on a copy of it)."""
    return marks_probe(_bare(tok))


def _bare(tok: Tokenizer) -> Tokenizer:
    """A copy of ``tok`` that neither truncates nor pads, for probes."""
    bare = Tokenizer.from_str(tok.to_str())
    bare.no_truncation()
    bare.no_padding()
    return bare


_prefix_cuts: weakref.WeakKeyDictionary[Tokenizer, MarkCuts | None] = weakref.WeakKeyDictionary()
_WORD_MODELS = {"Unigram", "BPE"}  # a word's tokens: the best path (Unigram) or merges (BPE) of its pieces
_WORD_SPLITS = {"Metaspace", "WhitespaceSplit"}  # pre-tokenizers that split at spaces alone
_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Precompiled", "Replace", "Prepend", "Lowercase", "Strip", "StripAccents"}


@dataclass(frozen=True)
class MarkCuts:
    """Where a prefix may end before a ``MARK_CUT``: before the ``marks`` given, after a character
    whose normalized form does not end in one of ``refused``."""

    marks: frozenset[str]
    refused: frozenset[str]


def prefix_mark_cuts(tok: Tokenizer) -> MarkCuts | None:
    """Where a text without spaces may be tokenized from a prefix that ends before a ``MARK_CUT``
    (None: nowhere).

    Anywhere for a tokenizer that ``splits_at_marks``. For a Unigram or BPE model over whole words
    (Metaspace, no pre-tokenizer), where a text without spaces is one word: before a mark that is a
    vocabulary piece (an unknown one could fuse with an unknown character before it), unless a piece
    holds that mark after the character before it. No piece then spans the cut, so every
    segmentation of the text has a boundary there, and Unigram's best path and BPE's merges up to
    it are the prefix's own (the same arithmetic in the same order: equal, ties too). A probe
    checks the prefixes' tokens and offsets."""
    if tok in _prefix_cuts:
        return _prefix_cuts[tok]
    bare = _bare(tok)  # one copy for both probes: a large vocabulary's takes a while
    found = MarkCuts(frozenset(MARKS), frozenset()) if marks_probe(bare) else _vocab_mark_cuts(tok, bare)
    _prefix_cuts[tok] = found
    return found


def _vocab_mark_cuts(tok: Tokenizer, bare: Tokenizer) -> MarkCuts | None:
    """``prefix_mark_cuts`` for a tokenizer that does not ``splits_at_marks`` (``bare``: its copy
    that neither truncates nor pads)."""
    if type(tok.model).__name__ not in _WORD_MODELS:
        return None
    if not all(p.get("type") in _WORD_SPLITS for p in _steps(tok.pre_tokenizer)):
        return None
    if not all(n.get("type") in _NORMALIZERS for n in _steps(tok.normalizer)):
        return None
    vocab = tok.get_vocab()
    pieces = {m: p for m in MARKS if (p := _normalized(tok, m)) and p in vocab}
    if not pieces:
        return None
    inside = re.compile(f"(.)(?={'|'.join(map(re.escape, pieces.values()))})")  # "." matches no line break:
    refused = frozenset(m.group(1) for m in inside.finditer("\n".join(vocab)))  # not at a piece's start
    cuts = MarkCuts(frozenset(pieces), refused)
    for left, right in _MARK_PROBES:
        if right[0] not in cuts.marks or _normalized(tok, left)[-1:] in refused:
            continue
        whole, alone = bare.encode_batch([left + right, left], add_special_tokens=False)
        if whole.ids[: len(alone.ids)] != alone.ids or whole.offsets[: len(alone.ids)] != alone.offsets:
            return None
    return cuts


def _steps(step: Any) -> list[dict[str, Any]]:
    """A normalizer's or pre-tokenizer's steps (a Sequence's members, flattened), as their JSON."""
    return [] if step is None else _flat(json.loads(step.__getstate__()))


def _flat(step: dict[str, Any]) -> list[dict[str, Any]]:
    if step.get("type") == "Sequence":
        return [s for member in step.get("normalizers", step.get("pretokenizers", [])) for s in _flat(member)]
    return [step]


def marks_probe(bare: Tokenizer) -> bool:
    """``splits_at_marks`` of a tokenizer that neither truncates nor pads."""
    return pieces_agree(bare, _MARK_PROBES, offsets=True)


def pieces_agree(tok: Tokenizer, probes: Sequence[tuple[str, str]], offsets: bool) -> bool:
    """Whether ``tok`` (neither truncating nor padding) gives each probe's two pieces, tokenized
    apart, the whole's tokens (and, with ``offsets``, its characters)."""
    for left, right in probes:
        whole, a, b = tok.encode_batch([left + right, left, right], add_special_tokens=False)
        if whole.ids != a.ids + b.ids:
            return False
        if offsets and whole.offsets != a.offsets + [(s + len(left), e + len(left)) for s, e in b.offsets]:
            return False
    return True


def last_match(pattern: re.Pattern[str], text: str, start: int, end: int) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text`` between ``start`` and ``end``, or None."""
    latest = deque(pattern.finditer(text, start, end), maxlen=1)
    return latest[0] if latest else None


def encoded(
    encode: Any, texts: Sequence[str] | Sequence[tuple[str, str]], given: Sequence[str] | None, special: bool = True
) -> Any:
    """``encode(texts)`` (a tokenizer's batch call), a text it cannot take named (``given``: the
    caller's texts, before a prompt was put in front); ``special``: with the special tokens."""
    try:
        return encode(list(texts), add_special_tokens=special)
    except TypeError as e:  # tokenizers' error for a str it cannot take names no text
        bad = first_unencodable(texts)
        if bad is None:
            raise
        raise ValueError(unencodable_message(texts if given is None else given, bad, "texts")) from e


def first_unencodable(texts: Sequence[str] | Sequence[tuple[str, str]]) -> int | None:
    """Index of the first text (or pair) that is not valid Unicode (a lone surrogate such as ``'\\udcff'``)."""
    for i, text in enumerate(texts):
        try:
            for part in text if isinstance(text, tuple) else (text,):
                part.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def unencodable_message(texts: Sequence[str] | Sequence[tuple[str, str]], index: int, name: str) -> str:
    item = texts[index]
    text = "".join(item) if isinstance(item, tuple) else item
    pos = next((j for j, ch in enumerate(text) if 0xD800 <= ord(ch) <= 0xDFFF), None)
    if pos is None:
        return "the prompt is not valid Unicode: it holds a lone surrogate; fix the prompt"
    return (
        f"{name}[{index}] is not valid Unicode: it holds a lone surrogate {text[pos]!r} at character {pos} "
        f"(as bytes decoded with errors='surrogateescape' give); decode the bytes with errors='replace' "
        f"or fix the text"
    )

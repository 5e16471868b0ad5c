"""Texts longer than a model's window, cut into windows of tokens instead of truncated.

Each text is tokenized once, whole (the prompt in front, as ``tokenize`` does it), and its tokens
are cut into windows of at most ``tokens`` model inputs: the tokenizer's special tokens and the
prompt's tokens in every window, the text's tokens in between, consecutive windows sharing
``overlap`` of them. A window ends at the last paragraph break in its second half; without one, at
the last sentence end there, then the last line break, then the last word start (so a word is not
cut in two unless it is longer than half a window), as text splitters cut by paragraphs, sentences,
lines and words in that order. The next window starts at a word. A text that fits one window gives
the very input ids that ``tokenize`` gives it, so its vector is the one a plain run computes. Each
window records the characters of the text it covers (``text[start:end]``, the prompt not counted).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from tokenizers import Encoding, Tokenizer

from ._base import prompt_text
from ._bundle import Manifest
from ._tokenize import Tokenized, encoded
from ._types import BundleKind, check_int

# Where a window may end, best first: the first character after a blank line, after a sentence's end
# (its mark, closing quotes or brackets, then a space; no space after CJK marks), after a line break.
BREAKS = (
    re.compile(r"\n[^\S\n]*\n\s*(?=\S)"),
    re.compile(r"[.!?\u2026][\"'\u2019\u201d)\]]*\s+(?=\S)|[\u3002\uff01\uff1f][\u300d\u300f\u201d\uff09]*\s*(?=\S)"),
    re.compile(r"\n\s*(?=\S)"),
)
# a cut rule's name, part of a corpus job's identity: other rules give other windows
CUTS = "paragraph, sentence, line, word"
V = TypeVar("V")  # the vectors: a numpy array (``Embedder``) or ``SparseEmbeddings`` (``SparseEncoder``)


@dataclass(frozen=True)
class Chunks:
    """The windows of a list of texts, in text order and then window order."""

    tokens: Tokenized  # one entry per window, ready for ``encode_tokenized``
    text: np.ndarray  # int64 [windows], the text each window is from
    index: np.ndarray  # int32 [windows], the window's place within its text, from 0
    start: np.ndarray  # int64 [windows], first character of the text the window covers
    end: np.ndarray  # int64 [windows], one past its last character

    def __len__(self) -> int:
        return len(self.index)

    def embedded(self, vectors: V) -> EmbeddedChunks[V]:
        """These windows with their vectors (``encode_chunks``' result)."""
        return EmbeddedChunks(vectors, self.text, self.index, self.start, self.end)

    def of_texts(self, texts: np.ndarray) -> tuple[Chunks, np.ndarray]:
        """The windows of texts ``texts`` (indices into the texts split), in that order, and each
        one's place among these windows: for texts that repeat, split once."""
        first = np.searchsorted(self.text, np.arange(int(texts.max(initial=-1)) + 1))
        counts = np.bincount(self.text, minlength=len(first))[texts]
        ends = np.cumsum(counts)
        sel = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - counts, counts) + np.repeat(first[texts], counts)
        picked = Chunks(self.tokens.select(sel.tolist()), np.repeat(np.arange(len(texts)), counts), self.index[sel],
                        self.start[sel], self.end[sel])  # fmt: skip
        return picked, sel


@dataclass(frozen=True)
class EmbeddedChunks(Generic[V]):
    """``encode_chunks``' result (``Embedder``, ``SparseEncoder``): a row per window, in the texts'
    order and then the windows'."""

    embeddings: V  # [windows, dimension]: in the precision asked for, or sparse
    text: np.ndarray  # int64 [windows], the input text each window is from
    chunk: np.ndarray  # int32 [windows], the window's place within its text, from 0
    start: np.ndarray  # int64 [windows], first character of the text the window covers
    end: np.ndarray  # int64 [windows], one past its last character (``text[start:end]``, the prompt not counted)

    def __len__(self) -> int:
        return len(self.chunk)

    def of(self, i: int) -> slice:
        """The rows of text ``i``'s windows: ``embeddings[chunks.of(i)]``."""
        lo, hi = np.searchsorted(self.text, [i, i + 1])
        return slice(int(lo), int(hi))

    def texts(self, texts: str | Sequence[str]) -> list[str]:
        """Each window's text, cut from ``texts`` (the texts that were embedded)."""
        batch = [texts] if isinstance(texts, str) else texts
        return [batch[t][a:b] for t, a, b in zip(self.text.tolist(), self.start.tolist(), self.end.tolist(), strict=True)]


def window_chunker(manifest: Manifest, tokenizer: Tokenizer, tokens: int | str, overlap: int,
                   prompt_name: str | None, prompt: str | None) -> Chunker:  # fmt: skip
    """The ``Chunker`` for windows of ``tokens`` model inputs (``"max"``: the model's
    ``max_seq_length``) of a bundle with ``manifest``, with the prompt ``encode`` would put in front."""
    if manifest.kind is BundleKind.STATIC:
        raise ValueError("chunk_tokens: a static-embedding bundle has no token window (every text is embedded whole); "
                         "leave chunking off")  # fmt: skip
    window = manifest.max_seq_length
    size = window if tokens == "max" else check_int(tokens, "chunk_tokens", 1, window, also=" or 'max'",
                                                    why=" (the model's max_seq_length)")  # fmt: skip
    return Chunker(tokenizer, window, size, overlap, prompt_text(manifest, prompt_name, prompt))


class Chunker:
    """Cuts texts into windows of at most ``tokens`` model inputs (special tokens and the prompt
    included; at most the model's ``max_seq_length``), ``overlap`` text tokens shared by neighbours."""

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int, tokens: int, overlap: int = 0,
                 prompt: str | None = None) -> None:  # fmt: skip
        self.tokens = check_int(tokens, "chunk_tokens", 1, max_seq_length, why=" (the model's max_seq_length)")
        self.overlap = check_int(overlap, "chunk_overlap", 0)
        self.prompt = prompt or ""
        tok = Tokenizer.from_str(tokenizer.to_str())  # a copy: whole texts, never truncated or padded
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self._prefix, self._suffix, self._prefix_types, self._suffix_types, self._type = _template(tok)
        # the text's room in one window, the prompt's tokens taken out (as tokenized alone: in front of
        # a text they may differ by a token, which ``split`` checks for each text)
        alone = len(tok.encode(self.prompt, add_special_tokens=False).ids) if self.prompt else 0
        room = self.tokens - len(self._prefix) - len(self._suffix) - alone
        if room <= self.overlap:
            held = f"the special tokens take {len(self._prefix) + len(self._suffix)}"
            held += f" and the prompt {alone}" if alone else ""
            raise ValueError(f"chunk_tokens={self.tokens} leaves {room} tokens of text per chunk ({held}), which must "
                             f"be more than chunk_overlap={self.overlap}: raise chunk_tokens or lower chunk_overlap")  # fmt: skip

    def split(self, texts: Sequence[str]) -> Chunks:
        """The windows of every text (at least one each: an empty text gives one window of no text).

        Texts are tokenized a group at a time (the tokenizer's encodings take tens of bytes a token)
        and each window's ids are kept as a small array, so memory follows the windows' tokens."""
        ids: list[np.ndarray] = []
        types: list[np.ndarray] = []
        text_of: list[int] = []
        index: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        skip = len(self.prompt)
        prefix, suffix = np.asarray(self._prefix, np.int32), np.asarray(self._suffix, np.int32)
        for first, group in _groups(texts):
            full = [self.prompt + t for t in group] if self.prompt else list(group)
            for i, e in enumerate(encoded(self._tok.encode_batch, full, group, special=False), start=first):
                all_ids = np.asarray(e.ids, dtype=np.int32)
                p = 0
                if skip:  # the prompt's tokens: those that end within it
                    while p < len(all_ids) and e.token_to_chars(p)[1] <= skip:
                        p += 1
                room = self.tokens - len(prefix) - p - len(suffix)
                if room <= self.overlap:
                    raise ValueError(f"texts[{i}]: chunk_tokens={self.tokens} leaves {room} tokens for the text after "
                                     f"the special tokens and the prompt's {p}, not more than chunk_overlap={self.overlap}")  # fmt: skip
                head = np.concatenate([prefix, all_ids[:p]])
                breaks = _breaks(full[i - first], skip, e) if len(all_ids) - p > room else ()  # only to cut it
                for k, (a, b) in enumerate(self._windows(e.token_to_word, p, len(all_ids), room, breaks)):
                    window = np.concatenate([head, all_ids[a:b], suffix])
                    kinds = np.full(len(window), self._type, dtype=np.int8)
                    kinds[: len(prefix)] = self._prefix_types
                    kinds[len(window) - len(suffix) :] = self._suffix_types
                    ids.append(window)
                    types.append(kinds)
                    text_of.append(i)
                    index.append(k)
                    starts.append(max(e.token_to_chars(a)[0] - skip, 0) if b > a else 0)
                    ends.append(max(e.token_to_chars(b - 1)[1] - skip, 0) if b > a else 0)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return Chunks(
            # each window an int32 array (a tenth of a list's memory), which the padding takes as it takes lists
            tokens=Tokenized(ids, types, lengths, np.zeros(len(ids), dtype=bool)),  # type: ignore[arg-type]
            text=np.asarray(text_of, dtype=np.int64),
            index=np.asarray(index, dtype=np.int32),
            start=np.asarray(starts, dtype=np.int64),
            end=np.asarray(ends, dtype=np.int64),
        )

    def _windows(
        self, word: Callable[[int], int | None], first: int, n: int, room: int, breaks: Sequence[np.ndarray],
    ) -> list[tuple[int, int]]:  # fmt: skip
        """Token ranges ``[a, b)`` over ``first..n`` of at most ``room`` tokens, ``overlap`` shared;
        ``word(j)``: the word of token ``j``; ``breaks``: ascending tokens that begin a paragraph, a
        sentence, a line (``_breaks``), where a window ends in preference to any other word start."""

        def word_starts(j: int) -> bool:
            return j >= n or word(j) is None or word(j) != word(j - 1)

        out: list[tuple[int, int]] = []
        s = first
        while True:
            e = s + room
            if e >= n:
                out.append((s, n))
                return out
            floor = s + max(self.overlap, room // 2)  # a window keeps at least half its room
            cut = next((int(b[j]) for b in breaks if (j := int(np.searchsorted(b, e, "right")) - 1) >= 0
                        and b[j] > floor), None)  # fmt: skip
            if cut is None:  # no break: the last word start
                cut = e
                while cut > floor and not word_starts(cut):
                    cut -= 1
                if cut <= floor:  # one word fills the second half: cut inside it
                    cut = e
            out.append((s, cut))
            s = cut - self.overlap
            while s < cut and s > first and not word_starts(s):
                s += 1


def _breaks(text: str, skip: int, enc: Encoding) -> list[np.ndarray]:
    """For each of ``BREAKS``, the ascending tokens of ``text`` (encoded as ``enc``, the text's own
    characters from ``skip`` on: after the prompt) that begin a paragraph, a sentence, a line: the
    first token that starts after the last character before the break (a space or line break that
    the tokenizer keeps goes with what follows); none where one token spans the break."""
    out = []
    for rule in BREAKS:
        found = []
        for m in rule.finditer(text, skip):
            after = m.start() + len(m.group().rstrip())  # past the sentence's mark and closers
            for c in range(after, m.end() + 1):
                t = enc.char_to_token(c)
                if t is not None:
                    if (enc.token_to_chars(t) or (-1, -1))[0] >= after:
                        found.append(t)
                    break
        out.append(np.unique(np.asarray(found, dtype=np.int64)))
    return out


def _groups(texts: Sequence[str], chars: int = 1 << 21) -> Iterator[tuple[int, Sequence[str]]]:
    """``texts`` in consecutive groups of about ``chars`` characters (a longer text alone), with the
    index of each group's first text."""
    start, size = 0, 0
    for i, t in enumerate(texts):
        if size and size + len(t) > chars:
            yield start, texts[start:i]
            start, size = i, 0
        size += len(t)
    if start < len(texts) or not texts:
        yield start, texts[start:]


def _template(tok: Tokenizer) -> tuple[list[int], list[int], list[int], list[int], int]:
    """The special tokens the tokenizer puts before and after a single text (ids and type ids), and
    the text's type id; a tokenizer that does anything else to a text cannot be chunked."""
    found = None
    for probe in ("hello world", "x"):
        bare = tok.encode(probe, add_special_tokens=False)
        full = tok.encode(probe)
        n, m = len(bare.ids), len(full.ids)
        k = next((k for k in range(m - n + 1) if full.ids[k : k + n] == bare.ids), None)
        if n == 0 or k is None:
            break
        parts = (full.ids[:k], full.ids[k + n :], full.type_ids[:k], full.type_ids[k + n :], full.type_ids[k])
        if found is not None and parts != found:
            found = None
            break
        found = parts
    if found is None:
        raise ValueError("this bundle's tokenizer does not wrap a text in fixed special tokens, so its windows "
                         "cannot be built from the text's tokens: chunking is not available for it")  # fmt: skip
    return found

"""Texts longer than a model's window, cut into windows of tokens instead of truncated.

Each text is tokenized once (the prompt in front, as ``tokenize`` does it; a huge text a piece at a
time, with the whole text's tokens: ``PIECE_CHARS``), and its tokens are cut into windows of at most ``tokens`` model inputs: the tokenizer's special tokens and the
prompt's tokens in every window, the text's tokens in between, consecutive windows sharing
``overlap`` of them. A window ends at the last paragraph break in its second half; without one, at
the last sentence end there, then the last line break, then the last word start (so a word is not
cut in two unless it is longer than half a window), as text splitters cut by paragraphs, sentences,
lines and words in that order. The next window starts at a word. A text that fits one window gives
the very input ids that ``tokenize`` gives it, so its vector is the one a plain run computes. Each
window records the characters of the text it covers (``text[start:end]``, the prompt not counted).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from tokenizers import Encoding, Tokenizer

from ._base import prompt_text
from ._bundle import Manifest
from ._tokenize import MARK_CUT, Tokenized, encoded, last_match, marks_probe, pieces_agree
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
# A text longer than this is tokenized a piece at a time, each piece but the first beginning with
# a space that follows a word (so that its tokens are those of the whole text: WordPiece drops the
# space, byte-level BPE and Metaspace give the word after it its own mark either way), or, for a
# tokenizer that passes ``marks_probe``, with a CJK mark after a letter (text without spaces),
# so that a huge text's encodings are never all held at once. Pieces and ``_groups`` are sized for
# text of a token a character (Chinese, Japanese; encodings take about 480 bytes a token): one
# document of 1.3 million such characters peaked at 553 MB in windows with pieces of 262,144
# characters in groups of 524,288, at 341-356 MB with 65,536 in groups of 262,144, in the same time;
# one of 16 MB of English 526 -> 437-438 MB (a one-off, the tiny bundle of the corpus job's memory
# benchmark).
PIECE_CHARS = 1 << 16
_RUN = re.compile(r"(?<=\S) ")  # a space after a word: where pieces start
_RUN_OR_MARK = re.compile(f"{_RUN.pattern}|{MARK_CUT.pattern}")
# A text of more tokens is looked up in arrays: the encoding's look-ups scan its tokens, so that
# cutting a text into windows through them grows with the square of its length (a one-off timing on
# all-MiniLM-L6-v2's tokenizer: even at about 16,000 tokens, 13 against 12 ms on prose, 5 against 9
# on code words; at 87,000, 355 against 71 ms).
_LOOKUPS_TOKENS = 1 << 14
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
        self._head, self._tail = np.asarray(self._prefix, np.int32), np.asarray(self._suffix, np.int32)
        # where a long text's pieces may start (None: it is tokenized whole)
        self._piece_starts = (_RUN_OR_MARK if marks_probe(tok) else _RUN) if _splits_at_spaces(tok) else None
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

        Texts are tokenized a group at a time (the tokenizer's encodings take hundreds of bytes a
        token), a text of more than ``PIECE_CHARS`` characters a piece at a time, and each window's
        ids are kept as a small array, so memory follows the windows' tokens."""
        out = _Collected()
        skip = len(self.prompt)
        held: list[_Piece] = []  # the pieces of a long text read so far
        pieces, owner, offset, last = _pieces(texts, PIECE_CHARS, self._piece_starts)
        for first, group in _groups(pieces):
            full = [self.prompt + t if self.prompt and offset[k] == 0 else t
                    for k, t in enumerate(group, start=first)]  # fmt: skip
            for k, e in enumerate(encoded(self._tok.encode_batch, full, group, special=False), start=first):
                shift = offset[k] - skip if offset[k] == 0 else offset[k]
                if last[k] and not held and len(e.ids) <= _LOOKUPS_TOKENS:  # the encoding's own look-ups
                    self._cut(owner[k], texts[owner[k]], _Encoded(e, shift), out)
                    continue
                held.append(_Piece.of(e, shift))
                if last[k]:
                    self._cut(owner[k], texts[owner[k]], _Piece.joined(held), out)
                    held = []
        return out.chunks()

    def _cut(self, i: int, text: str, tok: _Encoded | _Piece, out: _Collected) -> None:
        """Text ``i``'s windows (its tokens ``tok``, the prompt's in front) into ``out``."""
        n = len(tok.ids)
        p = 0  # the prompt's tokens: those that end within it
        while self.prompt and p < n and tok.end(p) <= 0:
            p += 1
        prefix, suffix = self._head, self._tail
        room = self.tokens - len(prefix) - p - len(suffix)
        if room <= self.overlap:
            raise ValueError(f"texts[{i}]: chunk_tokens={self.tokens} leaves {room} tokens for the text after "
                             f"the special tokens and the prompt's {p}, not more than chunk_overlap={self.overlap}")  # fmt: skip
        head = np.concatenate([prefix, tok.ids[:p]]) if p else prefix
        breaks = _breaks(text, tok) if n - p > room else ()  # only to cut it
        for k, (a, b) in enumerate(self._windows(tok.word_starts, p, n, room, breaks)):
            window = np.concatenate([head, tok.ids[a:b], suffix])
            kinds = np.full(len(window), self._type, dtype=np.int8)
            kinds[: len(prefix)] = self._prefix_types
            kinds[len(window) - len(suffix) :] = self._suffix_types
            out.add(window, kinds, i, k, max(tok.start(a), 0) if b > a else 0, max(tok.end(b - 1), 0) if b > a else 0)

    def _windows(
        self, word_starts: Callable[[int], bool], first: int, n: int, room: int, breaks: Sequence[np.ndarray],
    ) -> list[tuple[int, int]]:  # fmt: skip
        """Token ranges ``[a, b)`` over ``first..n`` of at most ``room`` tokens, ``overlap`` shared;
        ``word_starts(j)``: token ``j`` begins a word (or is ``n``); ``breaks``: ascending tokens that
        begin a paragraph, a sentence, a line (``_breaks``), where a window ends in preference to
        any other word start."""
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


class _Encoded:
    """A whole text's tokens through its encoding's own look-ups, characters counted in the text
    (the prompt's at or below 0)."""

    def __init__(self, e: Encoding, shift: int) -> None:
        self.e, self.shift = e, shift
        self.ids = np.asarray(e.ids, dtype=np.int32)

    def start(self, j: int) -> int:
        return int((self.e.token_to_chars(j) or (-1, -1))[0]) + self.shift

    def end(self, j: int) -> int:
        return int((self.e.token_to_chars(j) or (-1, -1))[1]) + self.shift

    def word_starts(self, j: int) -> bool:
        word = self.e.token_to_word
        return j >= len(self.ids) or word(j) is None or word(j) != word(j - 1)

    def char_to_token(self, c: int) -> int | None:
        t = self.e.char_to_token(c - self.shift)
        return None if t is None else int(t)


class _Piece:
    """A long text's tokens, or a piece's, as arrays: ids, the characters each covers (counted in
    the text) and whether each begins a word; 13 bytes a token against an encoding's hundreds."""

    FIELDS = ("ids", "starts", "ends", "word")

    def __init__(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, word: np.ndarray) -> None:
        self.ids = ids  # int32
        self.starts, self.ends = starts, ends  # int32 (int64 past 2**31 characters)
        self.word = word  # bool: begins a word

    @classmethod
    def of(cls, e: Encoding, shift: int) -> _Piece:
        """An encoding's tokens, its characters moved by ``shift`` (a piece's first token begins a
        word: pieces start with a space or a CJK mark)."""
        spans = np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) + shift
        spans = spans.astype(np.int32) if spans.size and spans.max() < 2**31 - 1 else spans
        words = np.fromiter((-1 if w is None else w for w in e.word_ids), dtype=np.int64, count=len(e.ids))
        word = np.ones(len(words), dtype=bool)
        word[1:] = (words[1:] == -1) | (words[1:] != words[:-1])
        return cls(np.asarray(e.ids, dtype=np.int32), spans[:, 0].copy(), spans[:, 1].copy(), word)

    @classmethod
    def joined(cls, parts: list[_Piece]) -> _Piece:
        """The pieces as one, each field's parts let go once joined (so a text's tokens are held
        about once, not twice)."""
        out = []
        for f in cls.FIELDS:
            out.append(np.concatenate([getattr(t, f) for t in parts]))
            for t in parts:
                setattr(t, f, None)
        return cls(*out)

    def start(self, j: int) -> int:
        return int(self.starts[j])

    def end(self, j: int) -> int:
        return int(self.ends[j])

    def word_starts(self, j: int) -> bool:
        return j >= len(self.ids) or bool(self.word[j])

    def char_to_token(self, c: int) -> int | None:
        """The first token covering character ``c``, as ``Encoding.char_to_token``."""
        t = int(np.searchsorted(self.ends, self.ends.dtype.type(c), "right"))  # in its type: no copy of it
        return t if t < len(self.ends) and self.starts[t] <= c else None


class _Collected:
    """Windows as they are cut, in text order and then window order."""

    def __init__(self) -> None:
        self.ids: list[np.ndarray] = []
        self.types: list[np.ndarray] = []
        self.text: list[int] = []
        self.index: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []

    def add(self, ids: np.ndarray, types: np.ndarray, text: int, index: int, start: int, end: int) -> None:
        self.ids.append(ids)
        self.types.append(types)
        self.text.append(text)
        self.index.append(index)
        self.start.append(start)
        self.end.append(end)

    def chunks(self) -> Chunks:
        lengths = np.fromiter(map(len, self.ids), dtype=np.int64, count=len(self.ids))
        return Chunks(
            # each window an int32 array (a tenth of a list's memory), which the padding takes as it takes lists
            tokens=Tokenized(self.ids, self.types, lengths, np.zeros(len(self.ids), dtype=bool)),  # type: ignore[arg-type]
            text=np.asarray(self.text, dtype=np.int64),
            index=np.asarray(self.index, dtype=np.int32),
            start=np.asarray(self.start, dtype=np.int64),
            end=np.asarray(self.end, dtype=np.int64),
        )


def _breaks(text: str, tok: _Encoded | _Piece) -> list[np.ndarray]:
    """For each of ``BREAKS``, the ascending tokens of ``text`` (``tok``) that begin a paragraph, a
    sentence, a line: the first token that starts after the last character before the break (a
    space or line break that the tokenizer keeps goes with what follows); none where one token
    spans the break."""
    out = []
    for rule in BREAKS:
        found = []
        for m in rule.finditer(text):
            after = m.start() + len(m.group().rstrip())  # past the sentence's mark and closers
            for c in range(after, m.end() + 1):
                t = tok.char_to_token(c)
                if t is not None:
                    if tok.start(t) >= after:
                        found.append(t)
                    break
        out.append(np.unique(np.asarray(found, dtype=np.int64)))
    return out


def _pieces(
    texts: Sequence[str], limit: int, cut: re.Pattern[str] | None
) -> tuple[list[str], list[int], list[int], list[bool]]:
    """The texts as pieces to tokenize: a text of more than ``limit`` characters cut where ``cut``
    matches (none there: whole), others whole (all of them where ``cut`` is None); each piece's
    text, the text it is of, its first character in that text, and whether it is the text's last
    piece."""
    if cut is None or all(len(t) <= limit for t in texts):  # most calls: every text whole
        return list(texts), list(range(len(texts))), [0] * len(texts), [True] * len(texts)
    pieces: list[str] = []
    owner: list[int] = []
    offset: list[int] = []
    last: list[bool] = []
    for i, t in enumerate(texts):
        cuts = _cuts(t, limit, cut) if len(t) > limit else [0, len(t)]
        for a, b in itertools.pairwise(cuts):
            pieces.append(t if b - a == len(t) else t[a:b])
            owner.append(i)
            offset.append(a)
            last.append(b == len(t))
    return pieces, owner, offset, last


def _splits_at_spaces(tok: Tokenizer) -> bool:
    """Whether the tokenizer gives a text the tokens of its two pieces when the second begins with
    a space after a word (not so where each call puts a mark in front, as a ``Prepend`` normalizer does)."""
    probes = [("hello world", " again"), ("One two.", " Three four"), ("x", "  y"), ("서울은", " 한국의"),
              ("line\n", " next")]  # fmt: skip
    return pieces_agree(tok, probes, offsets=False)


def _cuts(text: str, chars: int, cut: re.Pattern[str] = _RUN) -> list[int]:
    """``[0, ..., len(text)]``: pieces of at most about ``chars`` characters, each after the first
    beginning where ``cut`` matches (the last match in the piece's second half, else the next one)."""
    cuts = [0]
    while len(text) - cuts[-1] > chars:
        s = cuts[-1]
        m = last_match(cut, text, s + chars // 2, s + chars) or cut.search(text, s + chars)
        if m is None:
            break
        cuts.append(m.start())
    cuts.append(len(text))
    return cuts


def _groups(texts: Sequence[str], chars: int = 1 << 18) -> Iterator[tuple[int, Sequence[str]]]:
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

"""Texts cut into windows of tokens: the windows' ids against the tokenizer's own, for WordPiece,
byte-level BPE and Unigram tokenizers, with and without overlap and prompts."""

from __future__ import annotations

import functools
import itertools
import random
import re

import numpy as np
import pytest
from tiny_models import CORPUS, _train_tokenizer
from tokenizers import Tokenizer, processors

from embedrt._chunking import Chunker
from embedrt._tokenize import splits_at_marks

KINDS = ["wordpiece", "bpe", "unigram"]


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return _train_tokenizer(request.param)[0]


def _texts(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()
    return [" ".join(rng.choice(words) for _ in range(rng.choice([0, 1, 3, 12, 40, 120]))) for _ in range(n)]


def _whole(tok: Tokenizer, text: str, special: bool = False) -> list[int]:
    t = Tokenizer.from_str(tok.to_str())
    t.no_truncation()
    return t.encode(text, add_special_tokens=special).ids


def _place(seq: list[int], part: list[int], low: int, high: int) -> int:
    """The last place from ``low`` to ``high`` where ``part`` lies in ``seq`` (fails if none)."""
    places = [i for i in range(low, high + 1) if seq[i : i + len(part)] == part]
    assert places, f"the window's tokens are not where its neighbour ends ({low}..{high})"
    return places[-1]


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 5), (9, 3), (48, 0)])
def test_windows_cover_every_token_within_the_size(tokenizer: Tokenizer, size: int, overlap: int) -> None:
    texts = _texts()
    chunks = Chunker(tokenizer, 48, size, overlap).split(texts)
    first = _whole(tokenizer, "x", special=True)[0]
    last = _whole(tokenizer, "x", special=True)[-1]
    for t, text in enumerate(texts):
        rows = [k for k in range(len(chunks)) if chunks.text[k] == t]
        assert [int(chunks.index[k]) for k in rows] == list(range(len(rows))) and rows
        whole = _whole(tokenizer, text)
        at, covered = 0, 0
        for k in rows:
            ids = chunks.tokens.ids[k].tolist()
            assert len(ids) <= size and ids[0] == first and ids[-1] == last
            assert len(chunks.tokens.type_ids[k]) == len(ids) == chunks.tokens.lengths[k]
            body = ids[1:-1]
            if not body:
                assert whole == [] and len(rows) == 1
                continue
            # it goes on from the last window, sharing at most ``overlap`` tokens with it, skipping none
            at = _place(whole, body, max(covered - overlap, 0), covered)
            covered = at + len(body)
            start, end = int(chunks.start[k]), int(chunks.end[k])
            assert 0 <= start < end <= len(text)
        assert covered == len(whole)
        if len(whole) <= size - 2:  # fits: the very ids tokenize gives
            assert chunks.tokens.ids[rows[0]].tolist() == _whole(tokenizer, text, special=True)


def test_no_overlap_gives_the_text_tokens_once_and_windows_end_at_words(tokenizer: Tokenizer) -> None:
    texts = [t for t in _texts(60, seed=1) if t]
    room = 10
    chunks = Chunker(tokenizer, 48, room + 2).split(texts)
    probe = Tokenizer.from_str(tokenizer.to_str())
    probe.no_truncation()
    for t, text in enumerate(texts):
        rows = [k for k in range(len(chunks)) if chunks.text[k] == t]
        enc = probe.encode(text, add_special_tokens=False)
        assert [i for k in rows for i in chunks.tokens.ids[k][1:-1].tolist()] == enc.ids
        at = 0
        for k in rows[:-1]:
            at += len(chunks.tokens.ids[k]) - 2
            words = enc.word_ids
            if words[at] == words[at - 1]:  # cut inside a word: only one that fills the window's second half
                assert words.count(words[at]) >= room - room // 2
            else:
                assert int(chunks.end[k]) <= int(chunks.start[k + 1])


def test_every_window_holds_the_prompt(tokenizer: Tokenizer) -> None:
    prompt = "query: "
    texts = _texts(20, seed=2)
    chunks = Chunker(tokenizer, 48, 20, 2, prompt=prompt).split(texts)
    probe = Tokenizer.from_str(tokenizer.to_str())
    probe.no_truncation()
    for k in range(len(chunks)):
        text = texts[int(chunks.text[k])]
        full = probe.encode(prompt + text)
        bare = probe.encode(prompt + text, add_special_tokens=False)
        ids, start, end = chunks.tokens.ids[k].tolist(), int(chunks.start[k]), int(chunks.end[k])
        if len(full.ids) <= 20:
            assert ids == full.ids and start == 0 and end == len(text)
            continue
        n_prompt = sum(1 for _a, b in bare.offsets if b <= len(prompt))
        assert n_prompt >= 2 and ids[: 1 + n_prompt] == full.ids[: 1 + n_prompt]  # the special token, the prompt
        assert len(ids) <= 20 and 0 <= start < end <= len(text)


def test_a_template_with_a_suffix_only(tokenizer: Tokenizer) -> None:
    tok = Tokenizer.from_str(tokenizer.to_str())
    eos_token = "</s>" if tok.token_to_id("</s>") is not None else "[SEP]"
    eos = tok.token_to_id(eos_token)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos_token}", special_tokens=[(eos_token, eos)])
    text = " ".join(" ".join(CORPUS).split()[:60])
    chunks = Chunker(tok, 30, 10).split([text])
    assert len(chunks) > 1
    body = [i for ids in chunks.tokens.ids for i in ids[:-1].tolist()]
    assert body == _whole(tok, text)
    for ids in chunks.tokens.ids:
        assert ids[-1] == eos and len(ids) <= 10 and ids.dtype == np.int32


def test_bad_settings_are_named() -> None:
    tok = _train_tokenizer("wordpiece")[0]
    with pytest.raises(ValueError, match=r"chunk_tokens must be an integer from 1 to 48 \(the model's max_seq_length\), got 49"):
        Chunker(tok, 48, 49)
    with pytest.raises(ValueError, match=r"chunk_tokens=8 leaves 6 tokens of text per chunk .* chunk_overlap=6"):
        Chunker(tok, 48, 8, 6)
    with pytest.raises(ValueError, match="the prompt"):
        Chunker(tok, 48, 8, 2, prompt="a long prompt with many words in it")
    with pytest.raises(ValueError, match="chunk_overlap must be an integer >= 0, got -1"):
        Chunker(tok, 48, 8, -1)


def test_texts_are_tokenized_a_group_at_a_time(tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt import _chunking

    assert list(_chunking._groups(["aa", "bbb", "c"], chars=4)) == [(0, ["aa"]), (1, ["bbb", "c"])]
    assert list(_chunking._groups([], chars=4)) == [(0, [])]
    texts = _texts(30, seed=4)
    whole = Chunker(tokenizer, 48, 16, 3, prompt="q: ").split(texts)
    monkeypatch.setattr(_chunking, "_groups", functools.partial(_chunking._groups, chars=50))
    grouped = Chunker(tokenizer, 48, 16, 3, prompt="q: ").split(texts)
    assert [a.tolist() for a in grouped.tokens.ids] == [a.tolist() for a in whole.tokens.ids]
    for name in ("text", "index", "start", "end"):
        np.testing.assert_array_equal(getattr(grouped, name), getattr(whole, name))


def test_a_long_text_is_tokenized_in_pieces_with_the_whole_texts_windows(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedrt import _chunking

    rng = random.Random(6)
    words = " ".join(CORPUS).split()
    spaces = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n ", "\u00a0"]
    texts = ["".join(rng.choice(words) + rng.choice(spaces) for _ in range(n)) for n in (3, 200, 900, 2500)]
    texts += ["서울은 한국의 수도이다. 부산은 항구 도시이다!\n\n" * 40, "nospaces" * 300]
    # no spaces, but CJK marks after letters: pieces where the tokenizer passes its probe
    cjk = ["東京は日本の首都です。大阪は大きい町です！「本当？」と聞いた。" * 30, "我们今天去北京，明天回上海；价格是100元。" * 40]
    texts += cjk
    settings = [(48, 0, None), (20, 5, "query: "), (12, 2, None)]
    whole = [Chunker(tokenizer, 48, *s[:2], prompt=s[2]).split(texts) for s in settings]
    calls: list[int] = []
    inner = _chunking.encoded

    def spy(encode, texts, given, special=True):  # type: ignore[no-untyped-def]
        calls.append(sum(map(len, texts)))
        return inner(encode, texts, given, special)

    monkeypatch.setattr(_chunking, "PIECE_CHARS", 300)
    monkeypatch.setattr(_chunking, "_groups", functools.partial(_chunking._groups, chars=600))
    monkeypatch.setattr(_chunking, "encoded", spy)
    for s, want in zip(settings, whole, strict=True):
        got = Chunker(tokenizer, 48, *s[:2], prompt=s[2]).split(texts)
        assert [a.tolist() for a in got.tokens.ids] == [a.tolist() for a in want.tokens.ids]
        assert [a.tolist() for a in got.tokens.type_ids] == [a.tolist() for a in want.tokens.type_ids]
        for name in ("text", "index", "start", "end"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    # no call took a whole long text: pieces of about 300 characters, a few to a call (the text
    # without spaces, and the CJK texts where marks are no cut for the tokenizer, are taken whole)
    whole_texts = ["nospaces" * 300, *(() if splits_at_marks(tokenizer) else cjk)]
    alone = {len(p + t) for t in whole_texts for p in ("", "query: ")}
    assert splits_at_marks(tokenizer) == (tokenizer.pre_tokenizer.__class__.__name__ != "Metaspace")
    assert all(n <= 600 + 300 + len("query: ") or n in alone for n in calls) and len(texts[3]) > 10_000


def test_a_tokenizer_that_marks_each_call_takes_long_texts_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenizers import normalizers

    from embedrt import _chunking

    tok = _train_tokenizer("unigram")[0]  # as Llama's: a mark put in front of every call's text
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = None
    text = " ".join(" ".join(CORPUS).split()[:400])
    whole = Chunker(tok, 48, 20, 4).split([text])
    monkeypatch.setattr(_chunking, "PIECE_CHARS", 200)
    chunker = Chunker(tok, 48, 20, 4)
    assert chunker._piece_starts is None
    assert [a.tolist() for a in chunker.split([text]).tokens.ids] == [a.tolist() for a in whole.tokens.ids]
    assert Chunker(_train_tokenizer("unigram")[0], 48, 20)._piece_starts is not None


def test_a_pieces_arrays_answer_as_its_encoding(tokenizer: Tokenizer) -> None:
    from embedrt._chunking import _Encoded, _Piece

    text = "Tabs\tand  spaces. 서울은 한국의 수도이다!\n\nnew paragraph " + " ".join(" ".join(CORPUS).split()[:40])
    enc = Tokenizer.from_str(tokenizer.to_str()).encode(text, add_special_tokens=False)
    arrays, direct = _Piece.of(enc, 0), _Encoded(enc, 0)
    assert [arrays.char_to_token(c) for c in range(len(text) + 1)] == [direct.char_to_token(c) for c in range(len(text) + 1)]
    n = len(enc.ids)
    assert [arrays.word_starts(j) for j in range(1, n + 1)] == [direct.word_starts(j) for j in range(1, n + 1)]
    assert [(arrays.start(j), arrays.end(j)) for j in range(n)] == [(direct.start(j), direct.end(j)) for j in range(n)]


def test_pieces_begin_with_a_space_after_a_word() -> None:
    from embedrt._chunking import _cuts

    text = "alpha beta  gamma\ndelta " * 50
    cuts = _cuts(text, 40)
    assert cuts[0] == 0 and cuts[-1] == len(text) and len(cuts) > 20
    for a, b in itertools.pairwise(cuts):
        assert 0 < b - a <= 40 or b == len(text)
        if a:
            assert text[a] == " " and not text[a - 1].isspace()
    assert _cuts("x" * 100, 40) == [0, 100]  # nowhere to cut: whole
    assert _cuts("x" * 100 + " y", 40) == [0, 100, 102]  # past the size, at the next space
    assert _cuts("short", 40) == [0, 5]


def test_pieces_of_text_without_spaces_begin_at_a_cjk_mark_after_a_letter() -> None:
    from embedrt._chunking import _RUN_OR_MARK, _cuts

    text = "東京は日本の首都です。大阪は「大きい」。町_。100元！" * 20
    cuts = _cuts(text, 40, _RUN_OR_MARK)
    assert len(cuts) > 10 and cuts[-1] == len(text)
    for a in cuts[1:-1]:
        assert text[a] in "。！" and (text[a - 1].isalnum() and text[a - 1] != "_")  # not after 」 or _
    assert _cuts(text, 40) == [0, len(text)]  # spaces alone: whole


def test_the_breaks_are_paragraphs_sentences_and_lines() -> None:
    from embedrt._chunking import _breaks, _Encoded

    tok = _train_tokenizer("bpe")[0]
    text = 'One two. Three "four." Five\nsix\n\n  Seven? 八九。十一！ x'
    enc = Tokenizer.from_str(tok.to_str()).encode(text, add_special_tokens=False)
    para, sentence, line = (b.tolist() for b in _breaks(text, _Encoded(enc, 0)))

    def after(tokens: list[int]) -> list[str]:  # what follows each break: its token's first character, spaces skipped
        return [text[enc.offsets[t][0] :].lstrip()[:1] for t in tokens]

    assert after(para) == ["S"]
    assert after(sentence) == ["T", "F", "八", "十", "x"]
    assert after(line) == ["s", "S"]
    assert all(enc.offsets[t - 1][1] <= text.index(w) for t, w in zip(line, ["six", "Seven"], strict=True))
    k = text.index("Five")  # as behind a prompt of the characters before it
    assert after(_breaks(text[k:], _Encoded(enc, -k))[1].tolist()) == ["八", "十", "x"]


def _begins(text: str, c: int) -> int:
    """What begins at character ``c`` (spaces skipped): 3 a paragraph, 2 a sentence, 1 a line, 0 else."""
    while c < len(text) and text[c].isspace():
        c += 1
    before = text[:c]
    for level, rule in ((3, r"\n[^\S\n]*\n\s*$"), (2, r"[.!?][\"')\]]*\s+$"), (1, r"\n\s*$")):
        if re.search(rule, before):
            return level
    return 0


def _first_after_break(text: str, offsets: list[tuple[int, int]], j: int) -> bool:
    """Whether token ``j`` is the first to start after the text before it (spaces at its front skipped)."""
    p = offsets[j][0]
    while p > 0 and text[p - 1].isspace():
        p -= 1
    return offsets[j - 1][0] < p


def test_windows_end_at_the_best_break_in_their_second_half(tokenizer: Tokenizer) -> None:
    rng = random.Random(5)
    words = [w for w in " ".join(CORPUS).split() if w.isalpha()]

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.choice([2, 4, 7, 11]))) + rng.choice([".", "?", "", ""])

    def paragraph() -> str:
        return rng.choice([" ", "\n"]).join(sentence() for _ in range(rng.choice([1, 2, 5])))

    texts = ["\n\n".join(paragraph() for _ in range(rng.choice([1, 3, 6]))) for _ in range(30)]
    size = 24
    room = size - 2
    chunks = Chunker(tokenizer, 48, size).split(texts)
    probe = Tokenizer.from_str(tokenizer.to_str())
    probe.no_truncation()
    seen = [0, 0, 0, 0]
    for t, text in enumerate(texts):
        enc = probe.encode(text, add_special_tokens=False)
        rows = [k for k in range(len(chunks)) if chunks.text[k] == t]
        a = 0
        for k in rows[:-1]:
            b = a + len(chunks.tokens.ids[k]) - 2
            levels = {j: _begins(text, enc.offsets[j][0]) for j in range(a + room // 2 + 1, min(a + room, len(enc.ids) - 1) + 1)
                      if _first_after_break(text, enc.offsets, j)}  # fmt: skip
            best = max(levels.values(), default=0)
            seen[best] += 1
            if best:
                assert b == max(j for j, level in levels.items() if level == best), (text, k)
            a = b
    assert all(seen[1:]), seen  # every kind of break decided some window

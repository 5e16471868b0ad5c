"""Long texts under truncation are tokenized from a prefix: the windows must be exactly those of the
whole text, for every kind of tokenizer, and the prefix must really be what is tokenized."""

from __future__ import annotations

import random

import pytest
from tiny_models import CORPUS, _train_tokenizer
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from embedrt._tokenize import (
    MARK_CUT,
    PREFIX_CHARS_PER_TOKEN,
    flat_ids,
    prefix_mark_cuts,
    splits_at_marks,
    tokenize,
    truncated_encodings,
)

WINDOW = 24
LIMIT = WINDOW * PREFIX_CHARS_PER_TOKEN
# the split of GPT-4's and Qwen's tokenizers, ahead of a byte-level step without its own regex
_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
          r"\s+(?!\S)|\s+")  # fmt: skip


def _kind(name: str) -> Tokenizer:
    if name == "split-bytelevel":
        tok = _train_tokenizer("bpe")[0]
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"), pre_tokenizers.ByteLevel(use_regex=False),
        ])  # fmt: skip
    elif name == "metaspace-unsplit":
        tok = _train_tokenizer("unigram")[0]
        tok.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    else:
        tok = _train_tokenizer(name)[0]
    tok.enable_truncation(max_length=WINDOW)
    return tok


@pytest.fixture(scope="module", params=["wordpiece", "bpe", "unigram", "split-bytelevel", "metaspace-unsplit"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return _kind(request.param)


def _texts(seed: int = 0) -> list[str]:
    """Texts around the prefix's length: words joined by single and repeated spaces, tabs and line
    breaks, CJK runs without spaces, words longer than many tokens, one long word alone."""
    rng = random.Random(seed)
    words = [*" ".join(CORPUS).split(), "東京は日本の首都です", "대한민국은", "🙂🚀", "x" * 90, "1234567890"]
    seps = [" ", " ", " ", "  ", "\n", "\t", " \n ", "\n\n"]
    out = []
    for _ in range(60):
        n = rng.choice([LIMIT // 20, LIMIT // 6, LIMIT // 3, LIMIT])
        out.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(n)))
    out += ["日本語" * LIMIT, "y" * (3 * LIMIT), ("z" * 200 + " ") * (LIMIT // 50), "a" * (LIMIT - 1) + " b " * LIMIT]
    out += [CJK * (LIMIT // 10), "東京_。「大阪」。" * LIMIT]  # cut at a mark where the tokenizer allows; never
    return out


CJK = "東京は日本の首都です。大阪は大きい町です！我们今天去北京，明天回上海；价格是100元。"


def _whole(tok: Tokenizer, texts: list[str]) -> list[tuple[list[int], list[int], bool]]:
    return [(e.ids, e.type_ids, bool(e.overflowing)) for e in tok.encode_batch(texts)]


def test_the_windows_are_the_whole_texts(tokenizer: Tokenizer) -> None:
    texts = _texts()
    assert sum(len(t) > LIMIT for t in texts) > 30  # the prefix path is what this tests
    tok = tokenize(tokenizer, texts)
    assert list(zip(tok.ids, tok.type_ids, tok.truncated.tolist(), strict=True)) == _whole(tokenizer, texts)
    flat, lengths = flat_ids(tokenizer, texts)
    assert flat.tolist() == [i for ids in tok.ids for i in ids] and lengths.tolist() == tok.lengths.tolist()


def test_a_long_text_is_tokenized_from_its_prefix(tokenizer: Tokenizer) -> None:
    seen: list[str] = []

    def encode(texts: list[str], add_special_tokens: bool) -> list:  # type: ignore[type-arg]
        seen.extend(texts)
        return tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)

    text = "word " * LIMIT  # 5 characters a token: the prefix fills the window
    spaceless = "y" * (3 * LIMIT)  # no space to cut at: tokenized whole
    cjk = CJK * (LIMIT // 10)  # no space either: cut before a mark where the tokenizer allows it
    out = truncated_encodings(tokenizer, encode, [text, "short", spaceless, cjk], None)
    assert seen[0] == text[: len(seen[0])] and LIMIT // 2 < len(seen[0]) <= LIMIT and seen[0].endswith("word")
    assert seen[1:3] == ["short", spaceless]
    cuts = prefix_mark_cuts(tokenizer)  # first from a prefix of 2 characters a token of the window, then it filled it
    assert cuts is not None  # each kind here: pre-tokenizers that split at marks, or Metaspace's whole words
    assert cjk.startswith(seen[3]) and WINDOW < len(seen[3]) <= 2 * WINDOW and cjk[len(seen[3])] in cuts.marks
    assert len(seen) == 4 and seen[3][-1] not in cuts.refused
    assert [e.ids for e in out] == [e.ids for e in tokenizer.encode_batch([text, "short", spaceless, cjk])]
    assert splits_at_marks(tokenizer) == ("Metaspace" not in str(tokenizer.pre_tokenizer))  # pieces need more


def test_a_prefix_short_of_the_window_is_tokenized_from_the_next_prefix_then_whole() -> None:
    tok = _kind("wordpiece")
    tok.enable_truncation(max_length=100)  # prefixes of up to 200 characters, then up to 1,600
    seen: list[str] = []

    def encode(texts: list[str], add_special_tokens: bool) -> list:  # type: ignore[type-arg]
        seen.extend(texts)
        return tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    # a word of over 100 characters is one [UNK] token: neither prefix fills the window of 100
    text = "東京。" + "y" * 150 + "。" + ("y" * 150 + "。") * 20 + "大阪。" * 200
    out = truncated_encodings(tok, encode, [text], None)
    assert [len(s) for s in seen] == [153, 153 + 151 * 9, len(text)] and all(text.startswith(s) for s in seen)
    assert out[0].ids == tok.encode(text).ids and out[0].overflowing


def test_a_prefix_short_of_the_window_is_tokenized_again_whole() -> None:
    tok = _kind("wordpiece")  # a word of over 100 characters is one [UNK] token
    seen: list[str] = []

    def encode(texts: list[str], add_special_tokens: bool) -> list:  # type: ignore[type-arg]
        seen.extend(texts)
        return tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    few = ("z" * 200 + " ") * (LIMIT // 50) + "word " * LIMIT  # the prefix: a few [UNK]s, short of the window
    out = truncated_encodings(tok, encode, [few], None)
    assert len(seen) == 2 and len(seen[0]) <= LIMIT and seen[1] == few
    assert not tok.encode(seen[0]).overflowing and out[0].overflowing
    assert out[0].ids == tok.encode(few).ids


def test_no_truncation_or_left_truncation_tokenizes_whole() -> None:
    tok = _kind("wordpiece")
    text = "word " * (2 * LIMIT)
    seen: list[str] = []

    def encode(texts: list[str], add_special_tokens: bool) -> list:  # type: ignore[type-arg]
        seen.extend(texts)
        return tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    for setup in (tok.no_truncation, lambda: tok.enable_truncation(max_length=WINDOW, direction="left")):
        setup()
        seen.clear()
        truncated_encodings(tok, encode, [text], None)
        assert seen == [text]


def _pairs(seed: int = 1) -> list[tuple[str, str]]:
    """Pairs of a short and a long side (either way round), both short, both long, and a short side
    too long for the pair's budget."""
    texts = _texts(seed)
    rng = random.Random(seed)
    short = ["a query", "what is it?", "word " * (WINDOW // 2), "word " * (2 * WINDOW), ""]
    pairs = [(rng.choice(short), t) for t in texts] + [(t, rng.choice(short)) for t in texts[::3]]
    return [*pairs, (texts[0], texts[1]), ("q", "d"), ("word " * (WINDOW - 4), "word " * LIMIT)]


def test_pairs_keep_the_whole_pairs_tokens(tokenizer: Tokenizer) -> None:
    pairs = _pairs()
    seen: list[object] = []

    def encode(texts: list, add_special_tokens: bool) -> list:  # type: ignore[type-arg]
        seen.extend(texts)
        return tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)

    tok = tokenize(tokenizer, pairs)
    assert list(zip(tok.ids, tok.type_ids, tok.truncated.tolist(), strict=True)) == _whole(tokenizer, pairs)  # type: ignore[arg-type]
    out = truncated_encodings(tokenizer, encode, pairs, None)
    cut = [p for p in seen if isinstance(p, tuple) and p not in pairs]
    assert len(cut) > 20 and all(max(map(len, p)) <= LIMIT for p in cut)  # the long sides' prefixes were encoded
    assert [e.ids for e in out] == [e.ids for e in tokenizer.encode_batch(pairs)]


def test_pairs_keep_their_type_ids_without_a_post_processor() -> None:
    # tokenizers' call without offsets (single texts take it) gives a pair's second text type id 0
    # where no post-processor sets it; pairs must keep the full call's
    tok = _kind("wordpiece")
    tok.post_processor = None
    pairs = [("a query", "a document of words"), ("q", "d")]
    assert [e.type_ids for e in tok.encode_batch_fast(pairs)] != [e.type_ids for e in tok.encode_batch(pairs)]
    got = tokenize(tok, pairs)
    assert list(zip(got.ids, got.type_ids, strict=True)) == [(e.ids, e.type_ids) for e in tok.encode_batch(pairs)]


def _unigram(pieces: dict[str, float], normalizer: object = None) -> Tokenizer:
    """A SentencePiece-style Unigram over whole words (Metaspace), with the given pieces and every
    character of ``CJK`` (each at a low score)."""
    chars = {c: -10.0 for c in sorted(set(CJK + "▁"))}
    tok = Tokenizer(models.Unigram([("<unk>", 0.0), *{**chars, **pieces}.items()], unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    if normalizer is not None:
        tok.normalizer = normalizer
    return tok


def test_a_whole_word_model_is_cut_at_a_mark_unless_a_piece_spans_it() -> None:
    """No piece spans a cut: the prefix's tokens are the text's first. A piece holding a mark after a
    character ("す。") spans the cuts after that character: the prefix would end in other tokens there."""
    tok = _unigram({"す。": -1.0, "上海；": -1.0})
    cuts = prefix_mark_cuts(tok)
    assert cuts is not None and cuts.refused == {"す", "海"} and cuts.marks == set("。！，；")  # the marks in the vocabulary
    text = CJK * 3
    whole = tok.encode(text, add_special_tokens=False)
    exact = []
    for m in MARK_CUT.finditer(text):
        alone = tok.encode(text[: m.start()], add_special_tokens=False)
        exact.append(whole.ids[: len(alone.ids)] == alone.ids and whole.offsets[: len(alone.ids)] == alone.offsets)
        assert exact[-1] or text[m.start() - 1] in cuts.refused
    assert not all(exact) and sum(exact) > len(exact) // 2  # the refusals matter, most cuts stay
    for window in (8, 12, 20, 31):
        tok.enable_truncation(max_length=window)
        texts = [text, CJK[3:] * 4, "東京は日本の首都です。" * 40]
        got = truncated_encodings(tok, tok.encode_batch, texts, None)
        assert [e.ids for e in got] == [e.ids for e in tok.encode_batch(texts)]


def test_a_mark_the_model_lacks_or_another_model_is_never_cut() -> None:
    no_comma = _unigram({})
    cuts = prefix_mark_cuts(no_comma)
    assert cuts is not None and "，" in cuts.marks
    lacking = Tokenizer.from_str(no_comma.to_str().replace('["，",', '["x，",'))  # the comma no piece of its own
    cuts = prefix_mark_cuts(lacking)
    assert cuts is not None and "，" not in cuts.marks and "。" in cuts.marks
    nfkc = _unigram({",": -10.0}, normalizers.NFKC())  # the comma is ","  once normalized: a piece
    assert (cut := prefix_mark_cuts(nfkc)) is not None and "，" in cut.marks
    level = Tokenizer(models.WordLevel({c: i for i, c in enumerate(CJK)}, unk_token="東"))
    assert prefix_mark_cuts(level) is None  # a word's tokens not from pieces that cannot span a cut

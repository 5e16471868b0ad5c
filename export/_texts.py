"""The export-time validation grid: mixed lengths, padded batches, long inputs, non-English, empty."""

from __future__ import annotations

_ENGLISH = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email account?",
    "Embeddings map text to vectors so that similar meanings end up close together.",
    "Stocks rallied on Tuesday after the central bank signalled a pause in rate increases.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "I'd like a table for two at 7:30pm, please — by the window if possible!",
    "ERROR 503: upstream connect error or disconnect/reset before headers (retry in 30s).",
    "def encode(texts): return [model(t) for t in texts]  # naive loop",
    "Visit https://example.com/a/b?c=1&d=2 for the 2024 report (PDF, 3.2 MB).",
    "yes",
    "THE CAPITALISED HEADLINE OF A VERY LOUD NEWSPAPER",
]

_OTHER_LANGUAGES = [
    "대한민국은 민주공화국이다.",
    "모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다.",
    "오늘 날씨가 정말 좋네요. 공원에 산책하러 갈까요?",
    "이 법은 공포한 날부터 시행한다. 다만, 제3조의 개정규정은 공포 후 6개월이 경과한 날부터 시행한다.",
    "東京は日本の首都であり、世界有数の大都市です。",
    "机器学习是人工智能的一个分支。",
    "Привет, как дела? Это тестовое предложение.",
    "القط يجلس على السجادة.",
    "Ça coûte 12,50 € — très cher pour un café crème.",
    "Müller's Straße ist schön.",
]

_ODD = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "🙂🚀🔥 emoji only 👍🏽👨‍👩‍👧",
    "!!!???...",
    "1234567890 3.14159 2.71828",
    "a",
    "tab\tseparated\tvalues\nand a newline",
]

_PARAGRAPH = (
    "The history of computing is longer than the history of computing hardware and modern computing "
    "technology and includes the history of methods intended for pen and paper or for chalk and slate, "
    "with or without the aid of tables. Digital computing is intimately tied to the representation of "
    "numbers. But long before abstractions like the number arose, there were mathematical concepts to "
    "serve the purposes of civilization. "
)

_KOREAN_PARAGRAPH = (
    "국회는 국민의 보통·평등·직접·비밀선거에 의하여 선출된 국회의원으로 구성한다. "
    "국회의원의 수는 법률로 정하되, 200인 이상으로 한다. 국회의원의 선거구와 비례대표제 기타 "
    "선거에 관한 사항은 법률로 정한다. "
)


def validation_texts() -> list[str]:
    """About 45 texts; the long ones run past any max_seq_length up to 512 tokens."""
    long_texts = [
        _PARAGRAPH,  # ~80 tokens
        _PARAGRAPH * 2,  # ~160: between 128 and 256
        _PARAGRAPH * 3,  # ~240
        _PARAGRAPH * 4,  # ~320: past 256
        _PARAGRAPH * 12,  # far past 512
        _KOREAN_PARAGRAPH * 3,
        _KOREAN_PARAGRAPH * 10,
        " ".join(_ENGLISH) + " " + " ".join(_OTHER_LANGUAGES),
    ]
    return _ENGLISH + _OTHER_LANGUAGES + _ODD + long_texts


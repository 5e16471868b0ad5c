"""Real text for benchmarks and quality gates, built offline and deterministically.

Sources (nothing is downloaded at run time):

- English: docstrings of the Python standard library's own ``.py`` files (PSF licence), read with
  ``ast`` (no module is imported, so nothing runs).
- Korean: konlpy's ``kolaw`` (the Constitution of the Republic of Korea) and ``kobill`` (National
  Assembly bills); statutes and bills are outside copyright under article 7 of the Korean Copyright
  Act. The files are read out of konlpy's wheel; no Java, konlpy is never imported.

The built corpus is frozen in ``benchmarks/data/corpus-v1.json.gz`` (small, committed) so that every
machine and Python version benchmarks the same text; ``python -m benchmarks.corpus --rebuild``
remakes it from the sources.

    >>> from benchmarks.corpus import load_sentences, load_passages
    >>> sents = load_sentences(2000, seed=0)   # mixed lengths, ~25% Korean
    >>> passages = load_passages(64)           # ~250 tokens each (all-MiniLM-L6-v2's tokenizer)
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "corpus-v1.json.gz"
CACHE = HERE / ".cache"
KONLPY_PIN = "konlpy==0.6.0"

_MIN_CHARS, _MAX_CHARS = 24, 600
_KOREAN_SHARE = 0.25  # of the sentences returned by load_sentences
_PASSAGE_WORDS_EN = 180  # ~250 wordpieces with all-MiniLM-L6-v2's tokenizer
_PASSAGE_CHARS_KO = 200  # Hangul is split into jamo-level pieces: ~250 wordpieces


# -- sources -------------------------------------------------------------------------------------


def _stdlib_docstrings() -> list[tuple[str, str]]:
    """(module path, docstring) for every module, class and function of the standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo", "ensurepip"}
    out: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts) or rel.parts[0].startswith("__"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    out.append((str(rel), doc))
    return out


def _konlpy_wheel() -> Path:
    wheels = sorted(CACHE.glob("konlpy-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", KONLPY_PIN, "-d", str(CACHE)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wheels = sorted(CACHE.glob("konlpy-*.whl"))
    return wheels[-1]


def _korean_documents() -> list[tuple[str, str]]:
    out = []
    with zipfile.ZipFile(_konlpy_wheel()) as z:
        for name in sorted(z.namelist()):
            if "/data/corpus/" in name and name.endswith(".txt"):
                out.append((name.split("/data/corpus/")[1], z.read(name).decode("utf-8")))
    return out


# -- cleaning and splitting ----------------------------------------------------------------------

_EN_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_KO_SPLIT = re.compile(r"(?<=[다요음함임됨])\.\s+|(?<=[.!?])\s+(?=[가-힣(\"'])")
_CODEISH = re.compile(r">>>|\.\.\. |[{}\[\]=<>|\\`]|::|__\w+__|\w+\(.*\)|\$|%\(|#")


def _paragraphs(doc: str) -> list[str]:
    """Prose paragraphs of a docstring: no code examples, option tables or indented blocks."""
    paras = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.splitlines()
        indented = len(lines) > 1 and any(ln.startswith((" ", "\t")) for ln in lines[1:] if ln.strip())
        if indented and any(ln.lstrip().startswith((">>>", "-", "*", ":")) for ln in lines):
            continue  # argument lists, code, tables
        text = " ".join(ln.strip() for ln in lines)
        if text:
            paras.append(re.sub(r"\s+", " ", text))
    return paras


def _english_ok(s: str) -> bool:
    if not (_MIN_CHARS <= len(s) <= _MAX_CHARS) or _CODEISH.search(s):
        return False
    words = s.split()
    letters = sum(c.isalpha() for c in s)
    return len(words) >= 5 and letters / len(s) > 0.75 and s[0].isupper() and s[-1] in ".!?"


def _korean_ok(s: str) -> bool:
    hangul = sum("가" <= c <= "힣" for c in s)
    return _MIN_CHARS // 2 <= len(s) <= _MAX_CHARS and hangul / len(s) > 0.5


def build() -> dict[str, list[str]]:
    """Sentences and passages from the sources, deduplicated, in source order."""
    en_sents: list[str] = []
    en_passages: list[str] = []
    prose: dict[str, list[str]] = {}  # module -> its prose sentences, in order
    for module, doc in _stdlib_docstrings():
        for para in _paragraphs(doc):
            good = [s for s in _EN_SPLIT.split(para) if _english_ok(s)]
            en_sents.extend(good)
            prose.setdefault(module, []).extend(good)
    for sentences in prose.values():  # consecutive prose of one module, cut into ~250-token passages
        words = " ".join(sentences).split()
        for start in range(0, len(words) - _PASSAGE_WORDS_EN + 1, _PASSAGE_WORDS_EN):
            en_passages.append(" ".join(words[start : start + _PASSAGE_WORDS_EN]))
    ko_sents: list[str] = []
    ko_passages: list[str] = []
    for _, doc in _korean_documents():
        text = re.sub(r"\s+", " ", doc.replace("․", "·"))
        parts = [p.strip() for p in _KO_SPLIT.split(text)]
        good = [p if p.endswith((".", "?", "!")) else p + "." for p in parts if _korean_ok(p)]
        ko_sents.extend(good)
        chunk = ""
        for s in good:
            chunk = f"{chunk} {s}".strip()
            if len(chunk) >= _PASSAGE_CHARS_KO:
                ko_passages.append(chunk)
                chunk = ""
    return {
        "en_sentences": _dedupe(en_sents),
        "ko_sentences": _dedupe(ko_sents),
        "en_passages": _dedupe(en_passages),
        "ko_passages": _dedupe(ko_passages),
    }


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for s in items:
        key = s.casefold()
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


# -- public API ----------------------------------------------------------------------------------


def load_corpus() -> dict[str, list[str]]:
    """The frozen corpus (built and written on first use if the data file is missing)."""
    if not DATA.exists():
        save(build())
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def save(corpus: dict[str, list[str]]) -> Path:
    DATA.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(corpus, ensure_ascii=False, indent=0, sort_keys=True).encode("utf-8")
    with gzip.GzipFile(DATA, "wb", mtime=0) as f:  # mtime=0: byte-identical rebuilds
        f.write(payload)
    return DATA


def load_sentences(n: int = 2000, seed: int = 0, korean_share: float = _KOREAN_SHARE) -> list[str]:
    """``n`` natural sentences of mixed lengths, English and Korean, shuffled with ``seed``."""
    c = load_corpus()
    n_ko = min(round(n * korean_share), len(c["ko_sentences"]))
    n_en = n - n_ko
    if n_en > len(c["en_sentences"]):
        raise ValueError(f"asked for {n} sentences; the corpus has {len(c['en_sentences'])} English ones")
    rng = random.Random(seed)
    picked = rng.sample(c["en_sentences"], n_en) + rng.sample(c["ko_sentences"], n_ko)
    rng.shuffle(picked)
    return picked


def load_passages(n: int = 64, seed: int = 0, korean_share: float = 0.125) -> list[str]:
    """``n`` passages of ~250 tokens (English prose from docstrings, some Korean), shuffled with ``seed``."""
    c = load_corpus()
    n_ko = min(round(n * korean_share), len(c["ko_passages"]))
    n_en = min(n - n_ko, len(c["en_passages"]))
    rng = random.Random(seed)
    picked = rng.sample(c["en_passages"], n_en) + rng.sample(c["ko_passages"], n_ko)
    rng.shuffle(picked)
    return picked


def fingerprint() -> str:
    """sha256 of the frozen corpus file, recorded with every result."""
    return hashlib.sha256(DATA.read_bytes()).hexdigest()[:16] if DATA.exists() else "missing"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rebuild", action="store_true", help="rebuild the frozen corpus from its sources")
    args = p.parse_args(argv)
    if args.rebuild or not DATA.exists():
        save(build())
    c = load_corpus()
    for k, v in c.items():
        print(f"{k:14s} {len(v):6d}  e.g. {v[len(v) // 2][:90]!r}")
    print(f"{DATA} {DATA.stat().st_size / 1e6:.2f} MB sha256[:16]={fingerprint()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

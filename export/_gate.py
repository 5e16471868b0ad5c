"""The quality gate: a variant's embeddings against the PyTorch fp32 reference, on real text.

The export's own validation (``_validate``) checks parity on a small grid with tight tolerances;
this gate answers the user's question for lossy variants: *does retrieval still work?* It compares
``candidate`` with ``reference`` embeddings of the same texts (>= 1000 of mixed lengths) by

- cosine per text (mean and minimum),
- top-10 neighbour agreement: with every text a query (up to ``QUERIES``, evenly spread beyond), the
  share of the reference's 10 nearest neighbours (cosine, the query itself excluded) that the
  candidate's 10 nearest also contain. Every text rather than a sample of 100: where neighbours are
  crowded (Korean in an English model) a sample of 100 differed from every text by up to 0.013
  on the same vectors.

Default thresholds per precision and provider are in ``DEFAULT_THRESHOLDS``; a user may lower them
explicitly (``thresholds=``), never silently. A miss raises ``GateError`` naming every number.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from embedrt import ParityError, Precision
from embedrt._types import parse

TOP_K = 10
MIN_TEXTS = 1000
QUERIES = 2000  # every text of a gate set up to this many is a query

# Keys: "mean_cos" / "min_cos" (lower bounds of the cosine per text), "topk" (top-10 agreement).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"min_cos": 0.99999},
    "fp16": {"mean_cos": 0.9999},
    "bf16": {"mean_cos": 0.9999},
    "int8": {"mean_cos": 0.995, "topk": 0.93},
}
_KNOWN_KEYS = ("mean_cos", "min_cos", "topk")


class GateError(ParityError):
    """A variant missed its quality gate. ``report`` holds every metric and the thresholds."""


def gate_key(precision: Precision | str, provider: str | None = None, hint: str | None = None) -> str:
    """The thresholds row for a variant: the graph's precision, or the provider's inference hint
    (OpenVINO's ``bf16`` on an fp32 graph is gated as bf16)."""
    if hint:
        return hint.lower()
    return parse(Precision, precision, "precision").value


def thresholds_for(
    precision: Precision | str,
    provider: str | None = None,
    overrides: Mapping[str, float] | None = None,
    hint: str | None = None,
) -> dict[str, float]:
    return merge_thresholds(DEFAULT_THRESHOLDS, gate_key(precision, provider, hint), overrides, _KNOWN_KEYS)


def merge_thresholds(
    table: Mapping[str, Mapping[str, float]], key: str, overrides: Mapping[str, float] | None,
    known: tuple[str, ...], what: str = "gate",
) -> dict[str, float]:
    """``table[key]`` with ``overrides`` applied key by key; an unknown row or key is a ValueError."""
    if key not in table:
        raise ValueError(f"no {what} for {key!r}: expected one of {sorted(table)}")
    out = dict(table[key])
    for k, v in (overrides or {}).items():
        if k not in known:
            raise ValueError(f"unknown {what} threshold {k!r}: expected one of {known}")
        out[k] = float(v)
    return out


# A reference vector this short is "zero" (e.g. a text of one padding-id token whose embedding row
# is zero): two zero vectors have no direction, so such rows are compared by norm alone.
ZERO_NORM = 1e-6


def cosines(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Cosine per row; a zero reference row scores 1 if the candidate is zero too, else 0."""
    ref = ref.astype(np.float64)
    cand = cand.astype(np.float64)
    rn = np.linalg.norm(ref, axis=1)
    cn = np.linalg.norm(cand, axis=1)
    cos = (ref * cand).sum(axis=1) / np.maximum(rn * cn, 1e-30)
    zero = rn <= ZERO_NORM
    return np.where(zero, (cn <= 10 * ZERO_NORM).astype(np.float64), cos)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def query_indices(n: int, n_queries: int = QUERIES) -> np.ndarray:
    """Deterministic, evenly spread query rows (so queries span short and long texts alike)."""
    return np.unique(np.linspace(0, n - 1, num=min(n, n_queries)).round().astype(np.int64))


def topk_agreement(
    reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray, k: int = TOP_K
) -> np.ndarray:
    """Per query, the share of the reference's k nearest neighbours the candidate also ranks in its k."""
    ref, cand = _unit(reference), _unit(candidate)
    out = np.empty(len(queries))
    for j, q in enumerate(queries):
        rs, cs = ref @ ref[q], cand @ cand[q]
        rs[q] = cs[q] = -np.inf
        top_r = np.argpartition(-rs, k)[:k]
        top_c = np.argpartition(-cs, k)[:k]
        out[j] = len(np.intersect1d(top_r, top_c)) / k
    return out


def gate_metrics(
    reference: np.ndarray, candidate: np.ndarray, n_queries: int = QUERIES
) -> dict[str, Any]:
    """Cosine per text (mean, min, worst row) and top-10 neighbour agreement. No thresholds."""
    if reference.shape != candidate.shape:
        raise ValueError(f"reference shape {reference.shape} != candidate shape {candidate.shape}")
    if not np.all(np.isfinite(candidate)):
        bad = int(np.flatnonzero(~np.isfinite(candidate).all(axis=1))[0])
        return {
            "n_texts": len(reference),
            "nonfinite_row": bad,
            "mean_cos": float("nan"),
            "min_cos": float("nan"),
            "topk": float("nan"),
        }
    cos = cosines(reference, candidate)
    queries = query_indices(len(reference), n_queries)
    agree = topk_agreement(reference, candidate, queries)
    return {
        "n_texts": len(reference),
        "n_queries": len(queries),
        "mean_cos": float(cos.mean()),
        "min_cos": float(cos.min()),
        "worst_row": int(cos.argmin()),
        "topk": float(agree.mean()),
        "topk_min": float(agree.min()),
        "k": TOP_K,
    }


def run_gate(
    reference: np.ndarray,
    candidate: np.ndarray,
    precision: Precision | str,
    provider: str = "cpu",
    thresholds: Mapping[str, float] | None = None,
    *,
    hint: str | None = None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """Measure ``candidate`` against ``reference`` and return the report; raise ``GateError`` on a miss.

    ``thresholds`` overrides the defaults key by key (the user lowering a gate on purpose); the
    report records which thresholds were applied and whether they were the defaults.
    """
    if len(reference) < MIN_TEXTS:
        raise ValueError(f"the gate needs at least {MIN_TEXTS} texts, got {len(reference)}")
    limits = thresholds_for(precision, provider, thresholds, hint)
    report = gate_metrics(reference, candidate)
    report.update(
        precision=gate_key(precision, provider, hint),
        provider=provider,
        thresholds=limits,
        thresholds_default=not thresholds,
    )
    if "nonfinite_row" in report:
        row = report["nonfinite_row"]
        where = f" (text {texts[row][:80]!r})" if texts else ""
        raise GateError(
            f"{report['precision']} on {provider}: non-finite embedding at row {row}{where}", report
        )
    misses = [f"{k} {report[k]:.5f} < {v}" for k, v in limits.items() if not report[k] >= v]
    report["passed"] = not misses
    if misses:
        worst = report["worst_row"]
        where = f"; worst text {texts[worst][:80]!r}" if texts else ""
        raise GateError(
            f"{report['precision']} on {provider} missed its quality gate: {', '.join(misses)} "
            f"(mean_cos {report['mean_cos']:.5f}, min_cos {report['min_cos']:.5f}, top-{TOP_K} "
            f"{report['topk']:.4f} over {report['n_queries']} queries on {report['n_texts']} texts, "
            f"worst row {worst}{where}). Lower the gate explicitly if this is acceptable.",
            report,
        )
    return report


# -- the default text set ---------------------------------------------------------------------------

# Stdlib modules whose docstrings are plain English prose; importing them has no side effects.
_MODULES = (
    "os", "re", "json", "collections", "functools", "itertools", "pathlib", "string", "textwrap",
    "argparse", "logging", "subprocess", "threading", "asyncio", "email", "http.client",
    "urllib.parse", "socket", "decimal", "fractions", "statistics", "random", "datetime", "calendar",
    "zipfile", "tarfile", "csv", "unittest", "typing", "dataclasses", "enum", "inspect", "ast",
    "pickle", "copy", "heapq", "bisect", "shutil", "tempfile", "io", "codecs", "difflib", "hashlib",
    "hmac", "secrets", "struct", "weakref", "contextlib", "abc", "numbers", "operator", "sched",
    "queue", "selectors", "xml.dom.minidom", "xml.etree.ElementTree", "html.parser", "configparser",
    "pprint", "traceback", "warnings", "timeit", "doctest", "base64", "uuid", "ipaddress", "smtplib",
    "imaplib", "ftplib", "mailbox", "mimetypes", "wave", "colorsys",
)  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@functools.lru_cache(maxsize=1)
def _docstrings() -> tuple[str, ...]:
    docs: list[str] = []
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a stripped-down Python: fewer texts, still deterministic
            continue
        docs.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == name:
                docs.append(inspect.getdoc(obj) or "")
                if inspect.isclass(obj):  # methods' own docstrings, not inherited ones
                    docs.extend(
                        m.__doc__ or ""
                        for k, m in sorted(vars(obj).items())
                        if not k.startswith("_") and callable(m)
                    )
    return tuple(docs)


def gate_texts(n: int = MIN_TEXTS) -> list[str]:
    """``n`` distinct English texts of mixed lengths from the standard library's docstrings.

    Deterministic for a Python version. Three kinds, interleaved: single sentences (a handful of
    tokens), paragraphs (tens to a hundred), and whole docstrings (often past 256 tokens, so
    truncation is exercised).
    """
    sentences: list[str] = []
    paragraphs: list[str] = []
    whole: list[str] = []
    for doc in _docstrings():
        doc = doc.strip()
        if len(doc) < 20 or ">>>" in doc:
            continue
        if len(doc) > 600:
            whole.append(" ".join(doc.split()))
        for para in re.split(r"\n\s*\n", doc):
            flat = " ".join(para.split())
            if 80 <= len(flat) <= 1200:
                paragraphs.append(flat)
            sentences.extend(s for s in _SENTENCE_END.split(flat) if 15 <= len(s) <= 300)
    pools = [_dedupe(sentences), _dedupe(paragraphs), _dedupe(whole)]
    out: list[str] = []
    seen: set[str] = set()
    # 3 sentences : 2 paragraphs : 1 whole docstring, repeating; a short pool just runs out early.
    pattern = (0, 1, 0, 2, 0, 1)
    cursors = [0, 0, 0]
    while len(out) < n and any(c < len(p) for c, p in zip(cursors, pools, strict=True)):
        for kind in pattern:
            if cursors[kind] < len(pools[kind]) and len(out) < n:
                text = pools[kind][cursors[kind]]
                cursors[kind] += 1
                if text not in seen:
                    seen.add(text)
                    out.append(text)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct texts available from the standard library, asked for {n}")
    return out


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))

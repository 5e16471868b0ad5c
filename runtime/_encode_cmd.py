"""``embedrt encode``: one text per line in, embeddings out (.npy, .parquet, .jsonl); sparse bundles
write .jsonl rows of text, indices and values.

It says what it does from the start (reading, loading, tokenizing, then a bar in padded tokens,
whose ETA holds although batches run longest first), and on Ctrl-C what was and was not written:
the output file is written whole, once every text is embedded, or not at all.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._lines import COMPRESSED, DECODE_ERRORS, STDIN, STRUCTURED, csv_delimiter_arg, read_lines
from ._model_args import add_model_arguments, model_options, positive_or_auto
from ._types import AUTO

_TOKENIZE_CHUNK = 8192  # texts per tokenizer call when progress is shown (each call is parallel inside)


def add_encode_parser(sub: Any) -> None:
    p = sub.add_parser(
        "encode",
        help="embed texts (one per line) to .npy, .parquet or .jsonl",
        description="Embed one text per line from FILE (or - for stdin), read as UTF-8, or the --text-column "
        "of a .jsonl, .csv, .tsv, .parquet or .arrow file, or the messages of an .mbox mailbox (needs embedrt[dataset]; "
        "text files also .gz, .bz2, .xz, .zst). "
        "The output format "
        "follows the extension of -o: .npy (float32 [n, dim]), .parquet (columns text, embedding) or "
        ".jsonl; sparse bundles write .jsonl rows of text, indices, values. For a whole corpus (ids, "
        "resumable, bounded memory) use embed-dataset.",
    )
    p.add_argument("bundle")
    p.add_argument("input", nargs="?", default=STDIN, help="text file, one text per line; - reads stdin")
    p.add_argument("-o", "--output", required=True, help="OUT.npy, OUT.parquet or OUT.jsonl")
    p.add_argument(
        "--text-column",
        help="the column holding the texts in .jsonl, .csv, .tsv, .parquet and .arrow inputs (default: text)",
    )  # fmt: skip
    p.add_argument(
        "--text-template", metavar="TEMPLATE",
        help="each row's text made from several columns of those inputs, as in '{title} {text}' or 'title: "
        "{title|none} | text: {text}' (after |: the text for a null, missing or empty value), as embed-dataset "
        "takes it; instead of --text-column",
    )  # fmt: skip
    p.add_argument("--csv-delimiter", metavar="CHAR", type=csv_delimiter_arg,
                   help="the field delimiter of a .csv/.tsv input (default: ',' and tab), as embed-dataset takes it")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--max-batch-tokens", type=positive_or_auto, default=AUTO,
        help="most padded tokens per model run (rows x longest row), so long documents run in small batches "
        "(default: auto, 1024 on the CPU, the fastest there, 512 with one thread per run as under the "
        "default streams; 2048 on OpenVINO; 16384 on a GPU)",
    )  # fmt: skip
    add_model_arguments(p, streams_default="auto")  # a batch job: its batches queue
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    p.add_argument("--prompt-name", help="a prompt from the bundle's manifest, prepended to each text")
    p.add_argument(
        "--errors", default="strict", choices=DECODE_ERRORS,
        help="bytes that are not UTF-8: strict (an error naming the line, the default), replace (with "
        "U+FFFD) or ignore (drop them), as Python's codecs name it",
    )  # fmt: skip
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the bundle's files")
    p.add_argument("--no-progress", action="store_true", help="no progress messages or bar")
    add_output_precision(p)
    p.set_defaults(run=run_encode)


def add_output_precision(p: argparse.ArgumentParser) -> None:
    """``--precision``, ``--truncate-dim`` and ``--ranges``: what the written vectors hold."""
    from ._types import EmbeddingPrecision

    p.add_argument(
        "--precision", default="float32", choices=[m.value for m in EmbeddingPrecision],
        help="output precision, as sentence-transformers' quantize_embeddings: int8/uint8 (256 buckets per "
        "dimension between the --ranges, default: this input's min/max), binary/ubinary (1 bit per dimension, packed); "
        "float16: half floats, half the bytes",
    )  # fmt: skip
    p.add_argument("--truncate-dim", type=int, default=None, help="keep the first N dimensions (Matryoshka models)")
    p.add_argument(
        "--ranges", metavar="FILE.npy",
        help="int8/uint8 calibration ranges, shape (2, dim): mins and maxes (embedrt.quantization_ranges)",
    )  # fmt: skip


class _Run:
    """Where an encode run is, for the message an interrupt gets."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.existed = out.exists()
        self.stage = "reading the input"
        self.total = 0
        self.done = 0

    def interrupted(self) -> str:
        left = f"{self.out} was left as it was" if self.existed else f"nothing was written to {self.out}"
        if self.stage == "embedding":
            where = f"after embedding {self.done} of {self.total} texts"
        elif self.stage == "tokenizing":
            where = f"while tokenizing ({self.done} of {self.total} texts done)"
        else:
            where = f"while {self.stage}"
        return (f"interrupted {where}; {left} (the output is written whole, once every text is embedded): "
                f"run the command again to embed all of them")


def run_encode(args: argparse.Namespace) -> int:
    from ._io import check_output_path

    out = check_output_path(Path(args.output))
    if _structured(args.input) and args.errors != "strict":
        raise ValueError(
            f"--errors {args.errors} applies to plain-text input; in {args.input} a row whose bytes are not "
            "UTF-8 is named as a bad row (embed-dataset --on-error skip|null passes over such rows)"
        )
    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size!r}")
    run = _Run(out)
    try:
        _encode(args, run)
    except KeyboardInterrupt:
        _log(run.interrupted())
        return 130
    return 0


def _encode(args: argparse.Namespace, run: _Run) -> None:
    from ._bundle import load_manifest
    from ._embedder import Embedder
    from ._io import write_embeddings
    from ._quantization import quantize_embeddings
    from ._types import BundleKind

    say = _log if not args.no_progress else (lambda _msg: None)
    name = "stdin" if args.input == STDIN else args.input
    say(f"reading {name}")
    t0 = time.perf_counter()
    if _structured(args.input):
        texts = _read_column(args.input, args.text_column, args.text_template, args.csv_delimiter)
    elif args.csv_delimiter is not None:
        raise ValueError(f"--csv-delimiter ({args.csv_delimiter!r}) is for a .csv or .tsv input; {name} is read one "
                         "text a line")  # fmt: skip
    elif args.text_template is not None:
        raise ValueError(f"--text-template ({args.text_template!r}) needs a .jsonl, .csv, .tsv, .parquet or .arrow input, "
                         f"whose rows have columns; {name} is read one text a line")  # fmt: skip
    else:
        texts = read_lines(args.input, keep_blank=True, errors=args.errors, log=_log)
    run.total = len(texts)
    say(f"read {len(texts)} texts in {time.perf_counter() - t0:.1f} s; loading {args.bundle}")
    run.stage = "loading the bundle"
    if load_manifest(args.bundle, verify=False).kind is BundleKind.SPARSE:
        _encode_sparse(args, run, texts)
        return
    model = Embedder(
        args.bundle, **model_options(args), verify=not args.no_verify, truncate_dim=args.truncate_dim, max_batch_tokens=args.max_batch_tokens,
    )  # fmt: skip
    ranges = np.load(args.ranges, allow_pickle=False) if args.ranges else None
    show = not args.no_progress and len(texts) > args.batch_size
    run.stage = "tokenizing"
    tok = _tokenize(model, texts, args.prompt_name, run, show)
    run.stage, run.done = "embedding", 0
    if show:
        say(f"tokenized: {int(tok.lengths.sum())} tokens, {int(tok.truncated.sum())} texts cut at "
            f"max_seq_length {model.max_seq_length}")
    vectors = _embed(model, tok, args.batch_size, args.normalize or None, run, show)
    if args.precision != "float32" and len(vectors):
        vectors = quantize_embeddings(vectors, args.precision, ranges=ranges)
    run.stage = f"writing {run.out}"
    write_embeddings(run.out, texts, vectors)
    _log(f"wrote {len(texts)} embeddings of dimension {model.dimension} ({args.precision}) to {run.out}")


def _encode_sparse(args: argparse.Namespace, run: _Run, texts: list[str]) -> None:
    from ._io import write_sparse
    from ._sparse import SparseVector
    from ._sparse_encoder import SparseEncoder

    if args.precision != "float32" or args.truncate_dim or args.normalize:
        raise ValueError("--precision, --truncate-dim and --normalize apply to dense embeddings, not sparse bundles")
    model = SparseEncoder(args.bundle, **model_options(args), verify=not args.no_verify)
    run.stage, run.done = "embedding", 0
    vectors = model.encode(texts, batch_size=args.batch_size, prompt_name=args.prompt_name,
                           show_progress_bar=not args.no_progress and len(texts) > args.batch_size)  # fmt: skip
    assert not isinstance(vectors, SparseVector)
    run.stage = f"writing {run.out}"
    write_sparse(run.out, texts, vectors)
    _log(f"wrote {len(texts)} sparse vectors ({vectors.nnz / max(len(texts), 1):.0f} active dimensions each) "
         f"to {run.out}")


def _structured(path: str) -> bool:
    return path != STDIN and Path(path).suffix.lower() in (*STRUCTURED, *COMPRESSED)


def _read_column(path: str, column: str | None, template: str | None, delimiter: str | None) -> list[str]:
    """The texts of a file with columns, read by the corpus job's readers (pyarrow)."""
    try:
        from .dataset._template import one_of_flags
        from .dataset._texts import read_texts
    except ImportError as e:
        raise ImportError(
            f'reading {path} needs pyarrow: pip install "embedrt[dataset]" (from a clone: pip install ".[dataset]")'
        ) from e
    one_of_flags(column, template)
    return read_texts(path, column or "text", template, delimiter)


def _tokenize(model: Any, texts: list[str], prompt_name: str | None, run: _Run, show: bool) -> Any:
    from ._tokenize import concat

    if not show or len(texts) <= _TOKENIZE_CHUNK:
        return model.tokenize(texts, prompt_name=prompt_name)
    from ._progress import progress_bar

    parts = []
    with contextlib.closing(progress_bar("tokenize", "text", len(texts), unit_scale=True)) as bar:
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = texts[start : start + _TOKENIZE_CHUNK]
            parts.append(model.tokenize(chunk, prompt_name=prompt_name))
            run.done += len(chunk)
            bar.update(len(chunk))
    return concat(parts)


def _embed(model: Any, tok: Any, batch_size: int, normalize: bool | None, run: _Run, show: bool) -> np.ndarray:
    """``model.encode_tokenized`` on runs of its own batches (longest first, cut as it cuts them for the
    whole input, so the vectors are those of one ``encode`` call), counting progress in padded tokens
    after each. One batch per call with one stream; with several, ``8 x streams`` batches per call, so
    that every stream has a batch of its own until near the call's end."""
    from ._progress import EncodeProgress, batch_tokens, interactive
    from ._tokenize import token_batches

    order = np.argsort(-tok.lengths, kind="stable")
    lengths = tok.lengths[order]
    pieces = token_batches(lengths, batch_size, model.max_batch_tokens)
    cost = batch_tokens(lengths, pieces)
    per_call = 1 if model.streams == 1 else 8 * model.streams
    out = np.empty((len(tok), model.dimension), dtype=np.float32)
    bar = EncodeProgress(sum(cost), len(tok), show, lines=not interactive())  # a log gets lines, not a bar
    try:
        for b in range(0, len(pieces), per_call):
            run_pieces = pieces[b : b + per_call]
            rows = order[run_pieces[0].start : run_pieces[-1].stop]
            out[rows] = model.encode_tokenized(tok.select(rows), batch_size=batch_size, normalize=normalize)
            bar.update(len(rows), sum(cost[b : b + per_call]))
            run.done = bar.texts_done
    finally:
        bar.close()
    return out


def _log(msg: str) -> None:
    print(f"[embedrt] {msg}", file=sys.stderr, flush=True)

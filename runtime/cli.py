"""The ``embedrt`` command line.

    embedrt export SOURCE -o BUNDLE        a model folder becomes a validated ONNX bundle
    embedrt validate BUNDLE --against SRC  re-check a bundle against PyTorch, on your own texts
    embedrt encode BUNDLE [FILE|-] -o OUT  embed one text per line into .npy, .parquet or .jsonl
    embedrt rerank BUNDLE QUERY [FILE|-]   rank documents (one per line) with a reranker bundle
    embedrt info BUNDLE                    what a bundle is: model, pooling, precision, parity
    embedrt serve BUNDLE                   an OpenAI- and TEI-compatible HTTP server
    embedrt bench BUNDLE                   latency and throughput of a bundle on this machine
    embedrt embed-dataset IN OUT -m BUNDLE a whole corpus to a Parquet dataset, streaming, resumable
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._errors import EmbedrtError
from ._types import BundleKind, EmbeddingPrecision, Pooling, Precision

_EPILOG = """examples:
  embedrt export path/to/all-MiniLM-L6-v2 -o bundles/minilm
  embedrt encode bundles/minilm texts.txt -o vectors.npy
  embedrt encode bundles/minilm texts.txt -o bits.npy --precision ubinary --truncate-dim 256
  embedrt rerank bundles/reranker "what is a cat?" documents.txt --top-k 5
  echo "hello world" | embedrt encode bundles/minilm - -o out.jsonl
  embedrt validate bundles/minilm --against path/to/all-MiniLM-L6-v2 --texts my_texts.txt
  embedrt info bundles/minilm
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (EmbedrtError, ValueError, TypeError, ImportError, OSError) as e:
        print(f"embedrt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedrt",
        description="Sentence-embedding models as one ONNX graph, run by ONNX Runtime without PyTorch.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_export(sub)
    _add_validate(sub)
    _add_encode(sub)
    _add_info(sub)
    _add_optional(sub, "embedrt.server._cli", "add_serve_parser", "serve", "run an HTTP embedding server")
    _add_optional(sub, "embedrt._bench", "add_bench_parser", "bench", "benchmark a bundle on this machine")
    _add_optional(sub, "embedrt._rerank_cli", "add_rerank_parser", "rerank", "rank documents with a reranker bundle")
    _add_optional(
        sub, "embedrt.dataset._cli", "add_embed_dataset_parser", "embed-dataset",
        "embed a whole corpus into a Parquet dataset, resumable",
    )
    return parser


def _add_optional(sub: Any, module: str, adder: str, name: str, help_text: str) -> None:
    """Subcommands whose code lives elsewhere; their heavy imports stay lazy inside them."""
    import importlib

    try:
        getattr(importlib.import_module(module), adder)(sub)
    except (ImportError, AttributeError) as e:
        reason = str(e)
        p = sub.add_parser(name, help=f"{help_text} (unavailable: {reason})")
        p.set_defaults(run=lambda _a: _unavailable(name, reason))


def _unavailable(name: str, reason: str) -> int:
    print(f"embedrt {name} is unavailable: {reason}", file=sys.stderr)
    return 2


def _log(msg: str) -> None:
    print(f"[embedrt] {msg}", file=sys.stderr, flush=True)


# -- export / validate -----------------------------------------------------------------------------


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a model folder to a bundle",
        description="Export a sentence-transformers folder or a Hugging Face encoder folder into one ONNX "
        "graph with pooling, Dense and Normalize inside, then validate it against PyTorch. "
        "Needs the export extra: pip install torch==2.13.0 'embedrt[export]'.",
    )
    p.add_argument("source", help="local model folder (sentence-transformers or transformers)")
    p.add_argument("-o", "--output", required=True, help="bundle folder to write")
    p.add_argument(
        "--pooling",
        help="for plain encoder folders: comma-separated modes, in order, from "
        f"{[m.value for m in Pooling]} (default: mean); pooler = the model's own pooler_output "
        "(BERT: dense + tanh over the first token), cls = the first token's hidden state",
    )
    p.add_argument(
        "--kind", choices=[k.value for k in BundleKind if k is not BundleKind.STATIC],
        help="the bundle kind (default: from the folder: CrossEncoder -> reranker, SPLADE SparseEncoder -> sparse, "
        "else embedding); sparse for a plain *ForMaskedLM folder, embedding for a classifier's encoder",
    )
    p.add_argument("--precision", default="fp32", choices=[m.value for m in Precision], help="graph precision")
    p.add_argument("--optimize", action="store_true", help="fuse attention/layer-norm/gelu (onnxruntime optimizer)")
    p.add_argument(
        "--int8-method", default="auto", choices=["auto", "smooth", "nbits", "dynamic"],
        help="with --precision int8: smooth (calibrated channel balancing + onnxruntime's u8s8 GEMM, fastest), "
        "nbits (MatMulNBits, per-block activations: closest to fp32, slower), dynamic (plain per-tensor, "
        "FFN outputs kept fp32); auto = smooth, falling back to nbits if it misses the quality gate",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--exporter", default="auto", choices=["auto", "torchscript", "dynamo"],
        help="torch.onnx path; auto (default) takes the architecture's first choice and tries the other if it fails",
    )
    _add_trust_remote_code(p)
    p.add_argument("--texts", help="validate on these texts (one per line) instead of the built-in grid")
    _add_gate_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(run=_run_export)


def _add_trust_remote_code(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the modeling code a model folder ships (config.json auto_map), as transformers names it; "
        "read that code first. Never on by default",
    )


def _add_gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gate-texts", metavar="FILE",
        help="the quality gate's texts, one per line, at least 1000 (default: a built-in set of 1000)",
    )
    p.add_argument(
        "--gate", action="append", default=[], metavar="KEY=VALUE",
        help="lower (or raise) a gate threshold explicitly: mean_cos, min_cos or topk; repeatable. Defaults: "
        "fp32 min_cos 0.99999; fp16/bf16 mean_cos 0.9999; int8 mean_cos 0.995 and topk 0.93",
    )


def _gate_args(args: argparse.Namespace) -> tuple[list[str] | None, dict[str, float] | None]:
    texts = _read_lines(args.gate_texts, keep_blank=False) if args.gate_texts else None
    thresholds: dict[str, float] = {}
    for item in args.gate:
        key, sep, value = item.partition("=")
        try:
            thresholds[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--gate {item!r}: expected KEY=NUMBER, e.g. --gate mean_cos=0.99")
    return texts, thresholds or None


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_model  # lazy: torch

    texts = _read_lines(args.texts, keep_blank=False) if args.texts else None
    gate_texts, thresholds = _gate_args(args)
    out = export_model(
        args.source, args.output, pooling=args.pooling, precision=args.precision, optimize=args.optimize,
        opset=args.opset, exporter=args.exporter, validate_texts=texts, gate_texts=gate_texts,
        gate_thresholds=thresholds, overwrite=args.overwrite, int8_method=args.int8_method, kind=args.kind,
        trust_remote_code=args.trust_remote_code, log=_log,
    )
    print(out)
    return 0


def _add_validate(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="compare a bundle with its PyTorch source",
        description="Re-run the checks of a bundle against the PyTorch model it came from: parity per text "
        "(cosine, norms, token ids) and the quality gate (mean/min cosine, top-10 neighbour agreement on "
        ">= 1000 texts), on the device and precision you deploy. Exit code 1 when a check fails.",
    )
    p.add_argument("bundle")
    p.add_argument("--against", required=True, metavar="SOURCE", help="the model folder the bundle came from")
    p.add_argument("--texts", help="parity texts, one per line (default: the built-in grid)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "openvino"])
    p.add_argument("--precision-hint", choices=["fp32", "bf16", "fp16"], help="OpenVINO's compute precision")
    _add_gate_options(p)
    p.add_argument("--no-gate", action="store_true", help="parity only (quick)")
    p.add_argument("--record", action="store_true", help="write the gate result into the bundle's manifest")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    _add_trust_remote_code(p)
    p.set_defaults(run=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    from .export import validate_bundle  # lazy: torch

    texts = _read_lines(args.texts, keep_blank=False) if args.texts else None
    gate_texts, thresholds = _gate_args(args)
    report = validate_bundle(
        args.bundle, args.against, texts, raise_on_failure=False, device=args.device,
        precision_hint=args.precision_hint, gate=not args.no_gate, gate_texts=gate_texts,
        gate_thresholds=thresholds, record=args.record, trust_remote_code=args.trust_remote_code, log=_log,
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif "mean_cosine" not in report:  # a reranker or sparse bundle: raw scores / weights compared
        print(f"{report.get('pairs', report.get('texts'))} inputs  max abs diff {report['max_abs_diff']:.2e}  "
              f"token-id mismatches {report['token_id_mismatches']}  worst: {report['worst']['input']}")
        print("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"]))
    else:
        w = report["worst"] or {}
        print(f"texts {report['texts']}  mean cosine {report['mean_cosine']:.7f}  min cosine {report['min_cosine']:.7f}"
              f"  max abs diff {report['max_abs_diff']:.2e}  token-id mismatches {report['token_id_mismatches']}")
        print(f"worst: #{w.get('index')} {w.get('text')!r}")
        g = report.get("gate")
        if g and "mean_cos" in g:
            print(f"gate ({g.get('precision')} on {g.get('provider')}): mean cosine {g['mean_cos']:.6f}  min cosine "
                  f"{g['min_cos']:.6f}  top-10 agreement {g['topk']:.4f} over {g.get('n_queries')} queries on "
                  f"{g.get('n_texts')} texts; thresholds {g.get('thresholds')}")
        print("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"]))
    return 0 if report["passed"] else 1


# -- encode ------------------------------------------------------------------------------------------


def _add_encode(sub: Any) -> None:
    p = sub.add_parser(
        "encode",
        help="embed texts (one per line) to .npy, .parquet or .jsonl",
        description="Embed one text per line from FILE (or - for stdin). The output format follows the "
        "extension of -o: .npy ([n, dim]), .parquet (columns text, embedding) or .jsonl. Sparse bundles write "
        ".jsonl rows of text, indices, values.",
    )
    p.add_argument("bundle")
    p.add_argument("input", nargs="?", default="-", help="text file, one text per line; - reads stdin")
    p.add_argument("-o", "--output", required=True, help="OUT.npy, OUT.parquet or OUT.jsonl")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--max-batch-tokens", type=int, default=16384,
        help="most padded tokens per model run (rows x longest row), so long documents run in small batches",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: available CPUs)")
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    p.add_argument("--prompt-name", help="a prompt from the bundle's manifest, prepended to each text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_output_precision(p)
    p.set_defaults(run=_run_encode)


def _add_output_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision", default="float32", choices=[m.value for m in EmbeddingPrecision],
        help="output precision, as sentence-transformers' quantize_embeddings: int8/uint8 (256 buckets per "
        "dimension between the --ranges, default: this input's min/max), binary/ubinary (1 bit per dimension, packed)",
    )
    p.add_argument("--truncate-dim", type=int, default=None, help="keep the first N dimensions (Matryoshka models)")
    p.add_argument(
        "--ranges", metavar="FILE.npy",
        help="int8/uint8 calibration ranges, shape (2, dim): mins and maxes (embedrt.quantization_ranges)",
    )



def _run_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from ._bundle import load_manifest
    from ._embedder import Embedder
    from ._io import check_output_path, write_embeddings

    out = check_output_path(Path(args.output))
    texts = _read_lines(args.input, keep_blank=True)
    if load_manifest(args.bundle, verify=False).kind is BundleKind.SPARSE:
        return _encode_sparse(args, out, texts)
    model = Embedder(
        args.bundle, device=args.device, threads=args.threads, truncate_dim=args.truncate_dim,
        max_batch_tokens=args.max_batch_tokens,
    )  # fmt: skip
    ranges = np.load(args.ranges, allow_pickle=False) if args.ranges else None
    vectors = model.encode(
        texts, batch_size=args.batch_size, normalize=args.normalize or None, prompt_name=args.prompt_name,
        show_progress_bar=not args.no_progress and len(texts) > args.batch_size, precision=args.precision,
        ranges=ranges,
    )
    assert isinstance(vectors, np.ndarray)
    write_embeddings(out, texts, vectors)
    _log(f"wrote {len(texts)} embeddings of dimension {model.dimension} ({args.precision}) to {out}")
    return 0


def _encode_sparse(args: argparse.Namespace, out: Path, texts: list[str]) -> int:
    from ._io import write_sparse
    from ._sparse import SparseVector
    from ._sparse_encoder import SparseEncoder

    if args.precision != "float32" or args.truncate_dim or args.normalize:
        raise ValueError("--precision, --truncate-dim and --normalize apply to dense embeddings, not sparse bundles")
    model = SparseEncoder(args.bundle, device=args.device, threads=args.threads)
    vectors = model.encode(texts, batch_size=args.batch_size, prompt_name=args.prompt_name,
                           show_progress_bar=not args.no_progress and len(texts) > args.batch_size)  # fmt: skip
    assert not isinstance(vectors, SparseVector)
    write_sparse(out, texts, vectors)
    _log(f"wrote {len(texts)} sparse vectors ({vectors.nnz / max(len(texts), 1):.0f} active dimensions each) to {out}")
    return 0


def _read_lines(path: str, keep_blank: bool) -> list[str]:
    raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    return lines if keep_blank else [line for line in lines if line.strip()]


# -- info ----------------------------------------------------------------------------------------------


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a bundle", description="What a bundle is, from its manifest.")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the bundle's files")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from ._bundle import load_manifest
    from ._info import describe

    manifest = load_manifest(args.bundle, verify=not args.no_verify)
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        return 0
    rows = describe(manifest, Path(args.bundle))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

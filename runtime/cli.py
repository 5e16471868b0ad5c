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
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

from . import __version__
from ._encode_cmd import add_encode_parser
from ._errors import BundleError, EmbedrtError, ProviderWarning
from ._lines import read_lines
from ._objects import is_uri, local_bundle
from ._report import format_validation
from ._types import BundleKind, Pooling, Precision

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
        if is_uri(getattr(args, "bundle", None)):  # every command that takes a bundle: its local copy
            args.bundle = str(local_bundle(args.bundle))
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
            return int(args.run(args))
    except (EmbedrtError, ValueError, TypeError, ImportError, OSError) as e:
        print(f"embedrt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embedrt {args.command}: interrupted", file=sys.stderr)
        return 130


def _warning_printer(command: str, default: Any) -> Any:
    """embedrt's own warnings as one line on stderr; other libraries' as Python prints them."""

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:  # fmt: skip
        if issubclass(category, ProviderWarning):
            print(f"embedrt {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _version() -> str:
    import onnxruntime

    return f"embedrt {__version__} (onnxruntime {onnxruntime.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedrt",
        description="Sentence-embedding models as one ONNX graph, run by ONNX Runtime without PyTorch.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_export(sub)
    _add_validate(sub)
    add_encode_parser(sub)
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
    p.add_argument(
        "--precision", default="fp32", choices=[*(m.value for m in Precision), "auto"],
        help="graph precision; auto: int8 and fp32, fused and not, gated and timed here, the fastest that passes",
    )  # fmt: skip
    p.add_argument(
        "--optimize", action=argparse.BooleanOptionalAction, default=None,
        help="fusion (default: attention fused into the flash-attention graph wherever the architecture fuses, "
        "for fp32 and int8, the plain graph where it does not fuse; fp16 unfused); --optimize: every onnxruntime "
        "fusion, an error where nothing fuses; --no-optimize: the plain graph",
    )  # fmt: skip
    p.add_argument(
        "--int8-method", default="auto", choices=["auto", "smooth", "smooth-rows", "smooth-residual", "nbits", "dynamic"],
        help="with --precision int8: smooth (calibrated channel balancing + onnxruntime's u8s8 GEMM, fastest; "
        "one activation scale per token row where no layer norm made the input, per tensor elsewhere), "
        "smooth-rows (one scale per token row for every input: closer to fp32, vectors independent of "
        "the batch; 12-17%% more CPU time on an AVX2 EPYC), smooth-residual (the inputs of the Q/K/V and FFN input "
        "projections in two uint8 passes, the second over the rounding residual: the closest int8 to fp32, for a "
        "second product there; on an AVX2 EPYC as slow as fp32, meant for CPUs with VNNI), nbits (MatMulNBits, per-block activations: closest to fp32, slower), dynamic (plain per-tensor, "
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
        "fp32 min_cos 0.99999; fp16/bf16 mean_cos 0.9999; int8 mean_cos 0.995 and topk 0.93. An int8 reranker's "
        "gate: rank_corr 0.98, top_kept 0.9 (at least) and max_err 0.5 (at most)",
    )


def _gate_args(args: argparse.Namespace) -> tuple[list[str] | None, dict[str, float] | None]:
    texts = read_lines(args.gate_texts, keep_blank=False) if args.gate_texts else None
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

    texts = read_lines(args.texts, keep_blank=False) if args.texts else None
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

    texts = read_lines(args.texts, keep_blank=False) if args.texts else None
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
        g = report.get("gate")
        if g:  # an int8 reranker's gate
            print(f"reranker gate ({g['precision']} on {g['provider']}): rank correlation {g['rank_corr']:.4f}, "
                  f"top-{g['top_k']} kept {g['top_kept']:.3f}, max score error {g['max_err']:.3f} spreads over "
                  f"{g['queries']} queries x {g['candidates']} candidates: {'passed' if g['passed'] else 'FAILED'}")
        print("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"]))
    else:
        print(format_validation(report))
    return 0 if report["passed"] else 1


# -- info ----------------------------------------------------------------------------------------------


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info", help="describe a bundle, or how far an embed-dataset OUTPUT is",
        description="What a bundle is, from its manifest; or, given the OUTPUT folder of embed-dataset, whether "
        "it is complete, being written (by which run, how fast, how long still) or stopped before its end.",
    )  # fmt: skip
    p.add_argument("path", metavar="BUNDLE|OUTPUT")
    p.add_argument("--json", action="store_true", help="print the whole manifest (an OUTPUT: its status)")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the bundle's files")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from ._bundle import load_manifest
    from ._info import describe

    if _is_dataset_output(args.path):
        from .dataset._status import output_status

        status = output_status(args.path)
        if args.json:
            print(json.dumps(status.to_dict(), indent=2, ensure_ascii=False, default=str))
            return 0
        rows = status.lines()
    else:
        if not is_uri(args.path) and Path(args.path).is_dir() and not (Path(args.path) / "manifest.json").is_file():
            raise BundleError(f"{args.path!r} is neither a bundle (no manifest.json: a folder written by `embedrt "
                              "export`) nor the OUTPUT of `embedrt embed-dataset` (no _manifest.json)")  # fmt: skip
        bundle = local_bundle(args.path) if is_uri(args.path) else Path(args.path)
        manifest = load_manifest(bundle, verify=not args.no_verify)
        if args.json:
            print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
            return 0
        rows = describe(manifest, bundle)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _is_dataset_output(where: str) -> bool:
    """Whether ``where`` is an output folder of embed-dataset (it holds ``_manifest.json``; a bundle's is
    ``manifest.json``)."""
    if not is_uri(where):
        return (Path(where) / "_manifest.json").is_file()
    from .dataset._storage import output_folder

    return output_folder(where).read("_manifest.json") is not None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

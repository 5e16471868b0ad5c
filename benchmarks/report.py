"""Derived numbers, the Markdown tables and the PNG plots of a suite run."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "st-torch-fp32"
# The matrix-product peaks measured on a quiet 2-core Xeon with AMX (bf16), where the speed targets were set.
QUIET_PEAKS = {"fp32": 400e9, "bf16": 2.9e12}


def derive(data: dict[str, Any]) -> None:
    """Fill each system's ``rows``: texts/s, tokens/s, ratio to the reference, fraction of peak."""
    sets = data["sets"]
    peaks = data["peaks_flop_s"]
    for sys_ in data["systems"]:
        rows = {}
        for s in data["scenarios"]:
            raw = sys_["raw"].get(s["id"])
            if not raw or not raw.get("times"):
                continue
            st = sets[s["set"]]
            t = statistics.median(raw["times"])
            # A precision measured below fp32 has no hardware path here (bf16 without AVX-512 BF16 or AMX:
            # PyTorch emulates it; OpenVINO's bf16 hint runs fp32): the fp32 peak is the one that applies.
            used = sys_["precision"] if (peaks.get(sys_["precision"]) or 0) > peaks["fp32"] else "fp32"
            peak = peaks[used]
            rows[s["id"]] = {
                "texts_s": st["n_texts"] / t,
                "tokens_s": st["tokens"] / t,
                "seconds": t,
                "reps": len(raw["times"]),
                "spread": (max(raw["times"]) - min(raw["times"])) / t if len(raw["times"]) > 1 else 0.0,
                "frac_peak": st["flop"] / t / peak,
                "peak_used": used,
            }
            quiet = QUIET_PEAKS.get(sys_["precision"])
            rows[s["id"]]["frac_quiet_peak"] = st["flop"] / t / quiet if quiet else None
        sys_["rows"] = rows
        lat = sys_.get("latency_ms")
        if lat:
            a = np.asarray(lat)
            sys_["latency"] = {
                q: float(np.percentile(a, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
            }
    ref = next(s for s in data["systems"] if s["name"] == REFERENCE)
    for sys_ in data["systems"]:
        for sid, row in sys_["rows"].items():
            r = ref["rows"].get(sid)
            row["ratio"] = row["texts_s"] / r["texts_s"] if r else None
        if sys_.get("latency") and ref.get("latency"):
            sys_["latency"]["ratio_p50"] = ref["latency"]["p50"] / sys_["latency"]["p50"]


def regenerate(json_path: Path) -> None:
    """Remake the Markdown and the plots of a results JSON (``python -m benchmarks.report FILE``)."""
    import json

    data = json.loads(json_path.read_text())
    derive(data)
    stem = json_path.stem
    json_path.with_suffix(".md").write_text(markdown(data, stem))
    plots(data, json_path.parent, stem)


def _optimizations(opt: dict[str, Any] | None) -> str:
    """A manifest's optimizations in a table cell: fused operators and the quantization scheme."""
    if not opt:
        return "–"
    parts = []
    fused = (opt.get("fusion") or {}).get("fused_ops") or opt.get("fused_ops")
    if fused:
        parts.append("fused " + ", ".join(f"{k}×{v}" for k, v in fused.items()))
    q = opt.get("quantization")
    if q:
        parts.append(
            f"{q.get('operator', q.get('method'))}: {q.get('weights', '')}; {q.get('activations', '')}"
        )
    return "; ".join(parts) or "–"


def _f(x: Any, fmt: str = "{:.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(data: dict[str, Any], stem: str) -> str:
    m = data["meta"]
    pk = data["peaks_flop_s"]
    out = [
        f"# embedrt benchmark: {m['machine']} {m['date']}",
        "",
        f"all-MiniLM-L6-v2, {m['threads']} threads on {m['cpu']} ({m['cores']} cores; {' '.join(m.get('cpu_flags', []))}), "
        f"load average at start {' '.join(f'{x:.1f}' for x in m['load_average_start'])}, git {m['git']}, "
        f"corpus {m['corpus']}. Command: `{m['command']}`. Ratios are to {REFERENCE} (sentence-transformers, "
        f"PyTorch fp32). Measured matrix-product peaks: fp32 {pk['fp32'] / 1e9:.0f}, bf16 {pk['bf16'] / 1e9:.0f}"
        + (f", int8 {pk['int8'] / 1e9:.0f}" if "int8" in pk else "")
        + " GFLOP/s in this run (quiet AMX Xeon: fp32 400, bf16 2900); '% peak' is useful FLOP/s "
        "(no padding) over this run's measured peak of the row's precision (fp32's where that one measured "
        "lower: no hardware path for it), '% quiet peak' over the quiet one.",
        "",
        f"## Real text: {data['sets']['sentences']['n_texts']} sentences (EN+KO, mean "
        f"{data['sets']['sentences']['mean_tokens']:.0f} tokens) and {data['sets']['passages']['n_texts']} passages "
        f"(mean {data['sets']['passages']['mean_tokens']:.0f} tokens), batch 32",
        "",
        "| system | sentences texts/s | × ref | tokens/s | % peak | % quiet peak | passages texts/s | × ref | p50 ms (b=1) | p99 ms | × ref p50 | "
        "load s | peak RSS MB | mean cos | min cos |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skipped = []
    for s in data["systems"]:
        if not s["ran"]:
            skipped.append(f"- **{s['name']}** ({s['label']}): {s['note']}")
            continue
        r = s["rows"].get("sentences-b32", {})
        p = s["rows"].get("passages-b32", {})
        lat = s.get("latency") or {}
        fid = s.get("fidelity") or {}
        out.append(
            f"| {s['name']} | {_f(r.get('texts_s'))} | {_f(r.get('ratio'), '{:.2f}')} | {_f(r.get('tokens_s'))} | "
            f"{_f(r.get('frac_peak') and 100 * r['frac_peak'], '{:.1f}')} | "
            f"{_f(r.get('frac_quiet_peak') and 100 * r['frac_quiet_peak'], '{:.1f}')} | {_f(p.get('texts_s'), '{:.1f}')} | "
            f"{_f(p.get('ratio'), '{:.2f}')} | {_f(lat.get('p50'), '{:.2f}')} | {_f(lat.get('p99'), '{:.2f}')} | "
            f"{_f(lat.get('ratio_p50'), '{:.2f}')} | {_f((s.get('load') or {}).get('load_s'), '{:.2f}')} | "
            f"{_f((s.get('rss') or {}).get('peak_rss_mb'))} | {_f(fid.get('mean_cosine'), '{:.5f}')} | "
            f"{_f(fid.get('min_cosine'), '{:.5f}')} |"
        )
    for group, title, key in (
        ("length", "Sequence length, batch 32: tokens/s (× ref, % peak)", "length"),
        ("length-b1", "Sequence length, batch 1: tokens/s (× ref)", "length"),
        ("batch", "Batch size at 128 tokens: texts/s (× ref, % peak)", "batch"),
    ):
        scen = [x for x in data["scenarios"] if x["group"] == group]
        if not scen:
            continue
        out += [
            "",
            f"## {title}",
            "",
            "| system | " + " | ".join(str(x[key]) for x in scen) + " |",
            "|---|" + "---:|" * len(scen),
        ]
        for s in data["systems"]:
            if not s["ran"]:
                continue
            cells = []
            for x in scen:
                row = s["rows"].get(x["id"])
                if not row:
                    cells.append("–")
                    continue
                v = row["texts_s"] if group == "batch" else row["tokens_s"]
                extra = f", {100 * row['frac_peak']:.0f}%" if group != "length-b1" else ""
                cells.append(f"{v:.0f} ({_f(row['ratio'], '{:.2f}')}×{extra})")
            out.append(f"| {s['name']} | " + " | ".join(cells) + " |")
    out += _targets(data)
    if data.get("parity_reports"):
        out += [
            "",
            "## Parity of embedrt's variants (their export quality gates, from each manifest)",
            "",
            "| bundle | precision | optimizations | gate min cosine | gate max abs diff | texts | suite mean cos | suite min cos |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        fid = {s["name"]: s.get("fidelity") or {} for s in data["systems"]}
        ran = {s["name"] for s in data["systems"] if s["ran"]}
        for name, rep in data["parity_reports"].items():
            if name not in ran:
                continue
            par = rep.get("parity") or {}
            out.append(
                f"| {name} | {rep.get('precision')} | {_optimizations(rep.get('optimizations'))} | {_f(par.get('min_cosine'), '{:.6f}')} | "
                f"{_f(par.get('max_abs_diff'), '{:.1e}')} | {par.get('texts', '–')} | {_f(fid[name].get('mean_cosine'), '{:.6f}')} | "
                f"{_f(fid[name].get('min_cosine'), '{:.6f}')} |"
            )
    if data.get("profile"):
        out += ["", "## Where the time goes (onnxruntime profiler, embedrt bundles, batch 32)", ""]
        for name, by_len in data["profile"].items():
            if isinstance(by_len, str):
                out.append(f"- {name}: {by_len}")
                continue
            for length, ops in by_len.items():
                top = ", ".join(f"{op} {100 * share:.0f}%" for op, share in ops[:6])
                out.append(f"- {name}, {length} tokens: {top}")
    if skipped:
        out += ["", "## Skipped", "", *skipped]
    out += [
        "",
        f"- {data['meta']['no_gpu']}.",
        "",
        f"![tokens/s vs length]({stem}-length.png)",
        f"![batch scaling]({stem}-batch.png)",
        "",
    ]
    return "\n".join(out)


# The speed targets: texts/s on real sentences at batch 32 and batch-1 p50, measured on a quiet 2-core
# Xeon with AMX before embedrt existed. embedrt's fp32/int8 rows are set against sentence-transformers'
# ONNX backend (fp32 ~200, int8 ~370), its OpenVINO-provider rows against ORT + OpenVINO EP bf16.
TARGETS: dict[str, dict[str, float]] = {
    "st-torch-fp32": {"texts_s": 230, "p50_ms": 7.0},
    "st-torch-bf16": {"texts_s": 615, "cos": 0.99996},
    "fastembed": {"texts_s": 60},
    "fastembed-sorted": {"texts_s": 215},
    "ct2-int8": {"texts_s": 540, "cos": 0.997},
    "openvino-fp32": {"texts_s": 450},
    "openvino-bf16": {"texts_s": 1170, "cos": 0.99999},
    "openvino-bf16-tput": {"texts_s": 1340, "cos": 0.99999},
    "embedrt-fp32": {"texts_s": 200},
    "embedrt-int8": {"texts_s": 370, "cos": 0.992},
    "embedrt-ov-bf16": {"texts_s": 1160, "p50_ms": 2.4},
    "ortgraph-ov-ep-bf16": {"texts_s": 1160, "p50_ms": 2.4},
}


def _targets(data: dict[str, Any]) -> list[str]:
    """Measured against the speed targets, absolute and as a ratio to the reference (the ratio is what
    survives a busy or different machine)."""
    ref_t = TARGETS[REFERENCE]["texts_s"]
    rows = []
    for s in data["systems"]:
        tgt = TARGETS.get(s["name"])
        row = s.get("rows", {}).get("sentences-b32")
        if not (tgt and row and s["ran"]):
            continue
        lat = (s.get("latency") or {}).get("p50")
        fid = (s.get("fidelity") or {}).get("mean_cosine")
        rows.append(
            f"| {s['name']} | {tgt['texts_s']:.0f} | {row['texts_s']:.0f} | {row['texts_s'] / tgt['texts_s']:.2f} | "
            f"{tgt['texts_s'] / ref_t:.2f} | {_f(row.get('ratio'), '{:.2f}')} | "
            f"{_f(tgt.get('p50_ms'), '{:.1f}')} | {_f(lat, '{:.1f}')} | {_f(tgt.get('cos'), '{:.5f}')} | {_f(fid, '{:.5f}')} |"
        )
    if not rows:
        return []
    return [
        "",
        "## Against the speed targets (quiet 2-core Xeon with AMX; real sentences, batch 32)",
        "",
        "| system | target texts/s | measured | measured / target | target × ref | measured × ref | target p50 ms | p50 ms | target cos | mean cos |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def plots(data: dict[str, Any], out_dir: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for group, key, ylab, fname in (
        ("length", "length", "tokens/s (batch 32)", "length"),
        ("batch", "batch", "texts/s (128 tokens)", "batch"),
    ):
        scen = [x for x in data["scenarios"] if x["group"] == group]
        if not scen:
            continue
        fig, ax = plt.subplots(figsize=(9, 5.5))
        colors = plt.get_cmap("tab20").colors
        for i, s in enumerate(data["systems"]):
            pts = [
                (x[key], s["rows"][x["id"]]["tokens_s" if group == "length" else "texts_s"])
                for x in scen
                if x["id"] in s.get("rows", {})
            ]
            if pts:
                style = "-" if s["name"].startswith("embedrt") else "--"
                ax.plot(
                    *zip(*pts, strict=True),
                    style,
                    color=colors[(2 * i) % 20 + (i // 10) % 2],
                    marker="os^vD<>px*h"[i % 11],
                    label=s["name"],
                    lw=2.2 if s["name"].startswith("embedrt") else 1.2,
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks([x[key] for x in scen], [str(x[key]) for x in scen])
        ax.set_xlabel("tokens per text" if group == "length" else "batch size")
        ax.set_ylabel(ylab)
        ax.set_title(f"all-MiniLM-L6-v2, {data['meta']['threads']} threads, {data['meta']['cpu'][:40]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out_dir / f"{stem}-{fname}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        regenerate(Path(arg))

"""What a bundle's variant is, as rows for ``embedrt info``: precision, provider, optimizations,
fused-operator counts, size and the quality-gate numbers. Reads the manifest only (and file sizes
when the bundle folder is given); no export code, no onnxruntime session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._bundle import Manifest
from ._int8_cpu import detect_cpu, plan_int8
from ._preferred import held_bundle, missing_here
from ._types import MADE_FOR, Device


def describe_variant(manifest: Manifest, bundle: str | Path | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` rows describing ``manifest``'s graph variant, in display order."""
    opt: dict[str, Any] = manifest.optimizations or {}
    rows: list[tuple[str, str]] = [("precision", manifest.precision.value)]
    rows.append(("provider", _provider(manifest.precision.value)))
    rows.append(("optimize (fusion)", "yes" if opt.get("optimize") else "no"))
    fused = opt.get("fused_ops") or {}
    if fused:
        rows.append(("fused ops", ", ".join(f"{op} {n}" for op, n in sorted(fused.items()))))
    not_fused = (opt.get("fusion") or {}).get("not_fused")
    if not_fused:
        rows.append(("not fused", ", ".join(not_fused)))
    skipped = (opt.get("fusion") or {}).get("skipped")
    if skipped:
        rows.append(("fusion skipped", str(skipped)[:200]))
    attention = opt.get("attention")
    if attention and "global_flash" in attention:  # a windowed model's global layers
        n = attention["global_flash"]
        rows.append(("flash attention", f"{n} global layer{'s' if n != 1 else ''}"))
    elif attention:
        kept = attention.get("kept_packed") or []
        rows.append(("flash attention", f"{attention.get('flash_attention')} layers" + (f", {len(kept)} kept packed" if kept else "")))
    local = opt.get("local_attention")
    if local:
        rows.append(("local attention", describe_local_attention(local)))
    rotary = opt.get("rotary")
    if rotary:
        rows.append(("rotary embeddings", _rotary_row(rotary)))
    split = (opt.get("split_products") or {}).get("split_products")
    if split:
        rows.append(("split products", f"{split} product{'s' if split != 1 else ''} computed slice by slice"))
    for attempt in opt.get("fallback_from") or []:
        rows.append(("fallback" if attempt.get("setting") else "int8 fallback", _fallback_row(attempt, q=opt.get("quantization"))))
    auto = opt.get("auto")
    if auto:
        rows.append(("chosen by auto", f"{auto.get('chosen')}: {auto.get('why')}"))
        faster = auto.get("faster_here")
        if faster and not manifest.preferred:  # a bundle that holds it says so in its "preferred setting" row
            rows.append(("faster here", f"{faster.get('setting')}, {faster.get('times_the_chosen')}x: {faster.get('how')}"))
    if manifest.preferred:
        rows.append(("preferred setting", _preferred_row(manifest.preferred)))
    q = opt.get("quantization")
    if q:
        rows.append(("quantization", f"{q.get('method')} ({q.get('operator')}): weights {q.get('weights')}"))
        rows.append(("activations", str(q.get("activations"))))
        smoothing = q.get("smoothing")
        if smoothing:
            rows.append(("smoothing", _smoothing_row(smoothing)))
        rows.append(
            ("quantized nodes", f"{q.get('quantized_nodes')} ({len(q.get('excluded_nodes', []))} kept fp32)")
        )
        outliers = (q.get("outlier_channels") or {}).get("in_fp32_beside_the_int8_product")
        if outliers:
            channels = sum(len(o["channels"]) for o in outliers)
            rows.append(("outlier channels", f"{channels} in {len(outliers)} FFN output projections computed fp32, "
                                             "beside their int8 products"))  # fmt: skip
        rows.append(("int8 on this CPU", plan_int8(q, detect_cpu()).text))
    f16 = opt.get("fp16")
    if f16:
        rows.append(
            ("fp16", f"{f16.get('fp16_initializers')} fp16 weights, {f16.get('fp32_nodes')} nodes kept fp32")
        )
    if bundle is not None:
        rows.append(("size", _size(Path(bundle), manifest)))
    made_for = MADE_FOR.get(manifest.precision, ())
    for label, gate in _gates(manifest):
        rows.append((label, _gate_row(gate, made_for)))
    return rows


def _smoothing_row(smoothing: dict[str, Any]) -> str:
    """SmoothQuant's groups and alphas, and how the int8 weights were rounded."""
    groups = smoothing.get("groups") or []
    smoothed = [g["alpha"] for g in groups if g.get("alpha") is not None]
    alphas = sorted(set(smoothed))
    text = f"{len(groups)} MatMul groups, {len(smoothed)} smoothed"
    if alphas:
        text += f" (alpha {alphas[0]}-{alphas[-1]})" if len(alphas) > 1 else f" (alpha {alphas[0]})"
    rounding = smoothing.get("rounding", "nearest")
    fed = smoothing.get("feedback_groups")
    if fed is not None and fed < len(groups) and rounding != "nearest":
        rounding += f" on {fed} of them, the rest to nearest (memory budget)"
    return f"{text}; weights rounded: {rounding}"


def _fallback_row(attempt: dict[str, Any], q: dict[str, Any] | None) -> str:
    """A setting (int8 method, fusion) the export tried first and dropped, why, and what it used instead."""
    numbers = ", ".join(f"{k} {attempt[k]:.5f}" for k in ("mean_cos", "min_cos", "topk", "rank_corr", "top_kept",
                                                         "max_err")
                        if isinstance(attempt.get(k), int | float))  # fmt: skip
    used = (q or {}).get("method", "the next setting")
    why = attempt.get("failed") or "missed the checks"
    return f"{attempt.get('setting') or attempt.get('method')} missed the checks ({why}{'; ' + numbers if numbers else ''}); used {used} instead"


def _preferred_row(preferred: dict[str, Any]) -> str:
    """The bundle's preferred setting, what it needs and whether ``device="auto"`` runs it here."""
    lacking = missing_here(preferred)
    here = ("runs here by default (device 'auto')" if lacking is None
            else f"not run here ({lacking}): the bundle's own graph runs on cpu")  # fmt: skip
    return (f"{preferred.get('device')} {preferred.get('precision_hint') or ''} on the graph in "
            f"{preferred.get('bundle')}/ ({preferred.get('times_the_bundle')}x the bundle's own where it was exported; "
            f"needs {', '.join(preferred.get('cpu_flags') or []) or 'nothing more'}): {here}")  # fmt: skip


def describe_local_attention(record: dict[str, Any]) -> str:
    """What the export did with a windowed model's local attention layers (its manifest record)."""
    if record.get("skipped"):
        return f"left as exported: {record['skipped']}"
    n = record["local_blocks"]
    return (f"{n} layer{'s' if n != 1 else ''} in blocks of {record['block']} tokens from "
            f"{record['blocks_from_tokens']} tokens on (each token sees {record['window']} either side)")


def _rotary_row(record: dict[str, Any]) -> str:
    n = record.get("rotary") or 0
    row = f"{n} on onnxruntime's RotaryEmbedding (tables for {record['positions']} positions)" if n else ""
    if record.get("left"):
        row += ("; " if row else "") + f"{record['left']} left as exported: {record.get('why')}"
    return row


def _provider(precision: str) -> str:
    return {
        "int8": "cpu (int8 kernels of the CPU provider)",
        "fp16": "cuda (fp16 runs slowly or not at all on CPU)",
    }.get(precision, "cpu, cuda, openvino (fp32 graph; openvino may compute in bf16)")


def _size(root: Path, manifest: Manifest) -> str:
    total = sum((root / name).stat().st_size for name in manifest.files if (root / name).is_file())
    text = f"{total / 1e6:.1f} MB ({len(manifest.files)} files)"
    held = held_bundle(root, manifest.preferred) if manifest.preferred else None
    if held is not None and held.is_dir():
        text += f", and the preferred setting's {held.name}/ {sum(p.stat().st_size for p in held.iterdir() if p.is_file()) / 1e6:.1f} MB"
    return text


def _gates(manifest: Manifest) -> list[tuple[str, dict[str, Any]]]:
    """Gate reports found in the manifest: ``parity["gate"]`` (one) or ``parity["gates"]`` (by setting)."""
    parity = manifest.parity or {}
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(parity.get("gate"), dict):
        out.append(("quality gate", parity["gate"]))
    for name, gate in (parity.get("gates") or {}).items():
        if isinstance(gate, dict):
            out.append((f"quality gate ({name})", gate))
    if not out and parity:
        out.append(("parity (grid)", parity))
    return out


def measured_on(g: dict[str, Any], made_for: tuple[Device, ...] = ()) -> str:
    """Where a gate or parity report was measured, and whether that is where the bundle is made to run."""
    provider = g.get("provider")
    if not provider:
        return "provider not recorded"
    text = f"measured on {provider}"
    if made_for and str(provider).split()[0] not in {d.value for d in made_for}:
        text += f", not on {'/'.join(d.value for d in made_for)} which this bundle is made for"
    return text


_AT_MOST = ("max_err",)  # gate thresholds that are upper bounds


def _gate_row(g: dict[str, Any], made_for: tuple[Device, ...] = ()) -> str:
    parts = []
    for key, label in (("mean_cos", "mean cos"), ("mean_cosine", "mean cos"), ("min_cos", "min cos"),
                       ("min_cosine", "min cos"), ("topk", "top-10 kept"), ("rank_corr", "rank correlation"),
                       ("top_kept", f"top-{g.get('top_k')} kept"), ("max_err", "max score error (spreads)")):  # fmt: skip
        if isinstance(g.get(key), int | float):
            parts.append(f"{label} {g[key]:.5f}")
    if "n_texts" in g:
        parts.append(f"{g['n_texts']} texts / {g.get('n_queries', '?')} queries")
    if "candidates" in g:  # a reranker's gate
        parts.append(f"{g.get('queries', '?')} queries x {g['candidates']} candidates")
    if "passed" in g:
        parts.append("passed" if g["passed"] else "FAILED")
    if g.get("thresholds"):
        lim = ", ".join(f"{k} {'<=' if k in _AT_MOST else '>='} {v}" for k, v in g["thresholds"].items())
        parts.append(f"gate {lim}" + ("" if g.get("thresholds_default", True) else " (changed by user)"))
    if parts:
        parts.append(measured_on(g, made_for))
    return "; ".join(parts) or "-"

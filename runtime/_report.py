"""What ``embedrt validate`` prints for a parity report (and its quality gate, when it ran)."""

from __future__ import annotations

from typing import Any

# Cosines this close to 1 print as 1.0000000: naming a "worst" text among them tells nothing.
_PRINTS_AS_ONE = 0.99999995


def format_validation(report: dict[str, Any]) -> str:
    where = f"{report.get('precision', '?')} on {report.get('provider', 'cpu')}"
    lines = [
        f"parity ({where}) on {report['texts']} texts against PyTorch fp32: mean cosine "
        f"{report['mean_cosine']:.7f}  min cosine {report['min_cosine']:.7f}  max abs diff "
        f"{report['max_abs_diff']:.2e}  token-id mismatches {report['token_id_mismatches']}"
    ]
    w = report.get("worst") or {}
    cosine = w.get("cosine")
    if isinstance(cosine, float) and (cosine < _PRINTS_AS_ONE or not report["passed"]):
        lines.append(f"lowest cosine {cosine:.7f}: text #{w.get('index')} {w.get('text')!r}")
    elif report["texts"]:
        lines.append("every text agrees with PyTorch to 7 decimals of cosine")
    g = report.get("gate")
    if g and "mean_cos" in g:
        lines.append(
            f"gate ({g.get('precision')} on {g.get('provider')}): mean cosine {g['mean_cos']:.6f}  min cosine "
            f"{g['min_cos']:.6f}  top-10 agreement {g['topk']:.4f} over {g.get('n_queries')} queries on "
            f"{g.get('n_texts')} texts; thresholds {g.get('thresholds')}"
        )
    elif g is None:
        lines.append("quality gate not run (--no-gate)")
    lines.append("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"]))
    return "\n".join(lines)

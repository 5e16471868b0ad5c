"""``validate_bundle``: re-run the PyTorch checks of an existing bundle, on the user's texts and on
the provider setting the user will deploy (e.g. OpenVINO computing in bf16)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedrt import Embedder
from embedrt._bundle import load_manifest, write_manifest
from embedrt._errors import ParityError
from embedrt._types import BundleKind

from ._gate import gate_texts as default_gate_texts
from ._model import load_reference
from ._progress import quiet
from ._source import read_source
from ._texts import validation_texts
from ._validate import quality_gate, validate


def validate_bundle(
    bundle: str | Path,
    source: str | Path,
    texts: list[str] | None = None,
    raise_on_failure: bool = True,
    *,
    device: str = "cpu",
    precision_hint: str | None = None,
    gate: bool = True,
    gate_texts: list[str] | None = None,
    gate_thresholds: dict[str, float] | None = None,
    record: bool = False,
    trust_remote_code: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare ``bundle``, run on ``device`` (and ``precision_hint``), with the PyTorch model in ``source``.

    Parity on ``texts`` (default: the export grid); then, with ``gate``, the quality gate on
    ``gate_texts`` (>= 1000; default: the built-in set). With ``record``, the gate report is written
    into the bundle's manifest under ``parity.gates["<device>-<precision>"]``. ``log`` gets progress
    lines (loading, the PyTorch reference, the gate) with an estimate of the time left.
    """
    say = log or quiet
    if load_manifest(bundle, verify=False).kind in (BundleKind.RERANKER, BundleKind.SPARSE):
        from ._validate_heads import validate_head_bundle

        return validate_head_bundle(bundle, source, texts, raise_on_failure, device, gate, gate_texts, gate_thresholds)
    embedder = Embedder(bundle, device=device, precision_hint=precision_hint)
    m = embedder.manifest
    if m.kind is BundleKind.STATIC:
        from ._static import read_static
        from ._static_check import check_static

        return check_static(bundle, read_static(source), texts, gate_texts if gate else None, gate_thresholds, say)
    spec = read_source(source, None if (Path(source) / "modules.json").is_file() else m.pooling, trust_remote_code)
    spec.max_seq_length = m.max_seq_length  # compare what the bundle does, at its own limit
    model, hf_tok = load_reference(spec, say)
    report = validate(embedder, model, hf_tok, texts or validation_texts(), raise_on_failure=raise_on_failure, log=say)
    if not gate:
        return report
    gate_texts = gate_texts or default_gate_texts()
    say(f"quality gate on {len(gate_texts)} texts (both sides embed them all: minutes on a small CPU; "
        "--no-gate skips it)")
    try:
        many = gate_texts or default_gate_texts()
        say(f"quality gate on {len(many)} texts")
        report["gate"] = quality_gate(embedder, model, hf_tok, many, gate_thresholds, log=say)
    except ParityError as e:
        if raise_on_failure:
            raise
        report["gate"] = e.report
        report["passed"] = False
        report.setdefault("failures", []).append(str(e))
    if record:
        setting = f"{embedder.device.value}-{(embedder.precision_hint or m.precision).value}"
        m.parity.setdefault("gates", {})[setting] = report["gate"]
        write_manifest(Path(bundle), m)
    return report

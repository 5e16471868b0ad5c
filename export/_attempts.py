"""Which variants an export builds and gates, and which one becomes the bundle.

A *setting* is a precision, a fusion choice and (int8) a recipe. ``export_model`` asks for one
precision or for ``auto``:

- one precision: its settings are tried in order and the first that passes its checks (parity grid
  and quality gate) is the bundle; a miss is recorded in the next one's manifest
  (``fallback_from``), e.g. int8 ``smooth`` then ``nbits``. A setting fused by default (``optimize``
  ``None``) is tried again unfused where onnxruntime refuses its graph, or where it misses a check
  and no other setting is left.
- ``auto``: int8 (smooth) and fp32, each as the default graph (fused, rewritten for the CPU) and
  unfused (``auto_settings``), are all built and gated, then timed on this machine, alternating,
  and the fastest that passed is the bundle. Its manifest records every candidate's gate and speed and why it won (``optimizations["auto"]``). Where OpenVINO is installed
  and the CPU computes bf16 natively, the unfused fp32 graph on ``device="openvino"`` in bf16 is gated
  and timed too. It does not replace the bundle's graph, which must run on every CPU the bundle goes
  to: where it is the fastest, the bundle also holds it, as its *preferred* setting (the plain fp32
  bundle in ``preferred/``, pinned by its manifest's sha256; ``embedrt._preferred``), which
  ``device="auto"`` runs wherever OpenVINO is installed and the CPU has the bf16 units it was
  measured with; the record says by how much (``faster_here``).

The PyTorch reference of the gate texts is computed once per export, whatever the number of
settings (the gate's costliest part on a CPU), and so is the int8 smoothing's search for each group
of weights the int8 graphs share (``Job.smoothing_choices``).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedrt import Embedder
from embedrt._bundle import MANIFEST_NAME, MODEL_NAME, SELF_HASH_KEY, Manifest, write_manifest
from embedrt._errors import BundleError, ParityError, ProviderError, ProviderWarning, UnsupportedModelError
from embedrt._int8_cpu import cpu_flags
from embedrt._openvino import openvino_version
from embedrt._preferred import PREFERRED_FOLDER
from embedrt._session import cpu_precision_hints
from embedrt._types import MADE_FOR, Device, InferencePrecision, Precision

from ._archs import ArchSpec, Variant
from ._quantize import RECIPE, RECIPES, Int8Recipe
from ._smooth import Choices
from ._tokenizer import write_tokenizer
from ._validate import quality_gate, reference_embeddings, validate
from ._window import Window

SPEED_TEXTS = 256  # gate texts timed per candidate (mixed lengths, batch 32)
SPEED_ROUNDS = 3
# Candidates within this share of the fastest are a tie (best-of-3 CPU time moves 2-5% between runs
# on a shared machine): the earliest in the settings' order wins, which is the export's own preference
# (int8 before fp32; fused, whose attention does not hold the scores at long lengths, before unfused).
SPEED_TIE = 0.05
# After a round, a candidate this many times slower than the fastest is not timed again: no later
# round can make it the fastest (rounds of one candidate differ by a few %); its record is its best
# so far. The fp32 candidates of an int8 export are often 2x slower: a third of the timing saved.
SPEED_DROP = 1.5
# A gate report's numbers that a missed setting's record keeps: an embedding's, then a reranker's
GATE_NUMBERS = ("mean_cos", "min_cos", "topk", "rank_corr", "top_kept", "max_err")


@dataclass(frozen=True)
class Setting:
    precision: Precision
    optimize: bool | None  # None: fuse where the architecture fuses (CPU precisions)
    recipe: Int8Recipe | None = None

    @property
    def label(self) -> str:
        fusion = {None: "fused where it fuses", True: "fused", False: "unfused"}[self.optimize]
        method = ""
        if self.recipe is not None:  # the name a user asks for; the default's fallback told apart from it
            named = [name for name, r in RECIPES.items() if r == self.recipe]
            method = f" {named[0]}" if named else f" {self.recipe.method} (run-time scales)"
        return f"{self.precision.value}{method}, {fusion}"


@dataclass
class Job:
    """What every attempt of one export shares."""

    spec: Any
    model: Any  # the PyTorch reference (EmbeddingModel)
    hf_tok: Any
    fp32: Path  # the exported fp32 graph every variant starts from
    work: Path
    arch: ArchSpec
    manifest: Callable[[Precision, dict[str, Any]], Manifest]
    tokenizer: Any
    validate_texts: list[str]
    gate_texts: list[str]
    thresholds: dict[str, float] | None
    say: Callable[[str], None]
    calibrate: Callable[[], Any]  # the int8 calibration batches, made on first use
    window: Window | None = None  # the local attention the fp32 graph computes in blocks
    # A bundle's checks (parity, then the gate of its precision): its report with the gate's under
    # "gate", a ParityError where it misses. Default: an embedding bundle's (``check_embedding``).
    check: Callable[[Job, Path, Setting], dict[str, Any]] | None = None
    # ``auto``: the candidates' speed (label -> (bundle, options) in, inputs per CPU-second out) and
    # the gate of the plain fp32 bundle on OpenVINO's bf16 (a GateError where it misses); an
    # embedding's by default (``measure_speed`` on the gate texts, ``quality_gate``). ``unit``: what
    # an input is, for the log and the record.
    time_settings: Callable[[dict[str, tuple[Path, dict[str, Any]]]], dict[str, float]] | None = None
    bf16_gate: Callable[[Job, Path], dict[str, Any]] | None = None
    unit: str = "texts"
    gate_reference: np.ndarray | None = field(default=None, init=False)  # a head's gate: PyTorch's outputs
    # the int8 smoothing's choices, shared by this export's int8 graphs (``_smooth.smooth_model``)
    smoothing_choices: Choices = field(default_factory=dict, init=False)
    _reference: np.ndarray | None = field(default=None, init=False)
    _calibration: Any = field(default=None, init=False)

    def reference(self) -> np.ndarray:
        if self._reference is None:
            self._reference, _ = reference_embeddings(
                self.model, self.hf_tok, self.gate_texts, self.spec.max_seq_length, batch_size=32,
                log=self.say, by_length=True,
            )
        return self._reference

    def calibration(self) -> Any:
        if self._calibration is None:
            self._calibration = self.calibrate()
        return self._calibration


def auto_settings(optimize: bool | None, arch: ArchSpec) -> list[Setting]:
    """``auto``'s candidates: int8 (smooth) and fp32, each as the default graph (fused where the
    architecture fuses; rotary embeddings and the other CPU rewrites wherever the graph has them)
    and unfused; int8 left out where the architecture refuses it. Where onnxruntime has no fusion
    for the architecture, int8 is made as the default graph only (its rewrites are exact: the plain
    int8 graph would be the same vectors, slower), fp32 both ways (the plain one is OpenVINO's). A
    default graph in which nothing was fused or rewritten is the unfused one, gated once
    (``run_settings``)."""
    precisions = [p for p in (Precision.INT8, Precision.FP32)
                  if p is Precision.FP32 or Variant.INT8 not in arch.refused]  # fmt: skip
    settings = []
    for p in precisions:
        fusions: list[bool | None] = [optimize] if optimize is not None else [None, False]
        if optimize is None and arch.fusion is None and p is Precision.INT8:
            fusions = [None]
        settings += [Setting(p, f, RECIPE if p is Precision.INT8 else None) for f in fusions]
    return settings


def run_settings(job: Job, settings: list[Setting], pick_fastest: bool) -> Path:
    """Build and check ``settings``; return the folder of the bundle that wins (see module doc)."""
    passed: dict[str, tuple[Path, dict[str, Any]]] = {}
    misses: list[dict[str, Any]] = []
    last_error: Exception | None = None
    todo, i = list(settings), 0
    while i < len(todo):
        setting = todo[i]
        bundle = job.work / f"bundle-{i}"
        bundle.mkdir()
        try:
            report, rewritten = _attempt(job, setting, bundle, [] if pick_fastest else misses)
        except (ParityError, UnsupportedModelError) as e:
            fused_by_default = setting.optimize is None and not pick_fastest  # auto has the unfused one
            if isinstance(e, UnsupportedModelError) and not (fused_by_default or pick_fastest):
                raise  # the graph asked for cannot run: no quiet substitute
            # unfused next where onnxruntime refused the fused graph, or where no other recipe is left
            # (an int8 miss is the quantization's more often than the fusion's: the next recipe first)
            retry = fused_by_default and (isinstance(e, UnsupportedModelError) or i + 1 == len(todo))
            if retry:
                todo.insert(i + 1, Setting(setting.precision, False, setting.recipe))
            last_error = e
            report = getattr(e, "report", {}) or {}
            misses.append({"setting": setting.label, "method": setting.recipe.method if setting.recipe else None,
                           "failed": str(e).splitlines()[0][:300],
                           **_numbers(report)})  # fmt: skip
            job.say(f"{setting.label} missed the checks ({str(e).splitlines()[0][:200]})"
                    + ("; trying it unfused" if retry else ""))  # fmt: skip
            shutil.rmtree(bundle)
            i += 1
            continue
        if not pick_fastest:
            return bundle
        made = setting if setting.optimize is not None or rewritten else replace(setting, optimize=False)
        if made != setting:  # nothing fused or rewritten: the unfused graph, not to be made again
            job.say(f"{setting.label}: nothing in this graph was fused or rewritten; it is the {made.label} graph")
            todo[i + 1 :] = [s for s in todo[i + 1 :] if s != made]
        passed[made.label] = (bundle, report)
        i += 1
    if last_error is not None and not passed:
        raise last_error
    if not passed:
        raise ValueError("no settings to try")
    return _fastest(job, passed, misses)


def _attempt(job: Job, setting: Setting, bundle: Path, misses: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Make ``setting``'s bundle in ``bundle`` and check it: its parity report, and whether its graph
    was fused or rewritten (contrib operators)."""
    from ._variants import apply_variant

    job.say(f"making {setting.label}")
    calibration = (
        job.calibration() if setting.recipe is not None and setting.recipe.method == "smooth" else None
    )
    optimizations = apply_variant(
        job.fp32, bundle / MODEL_NAME, setting.precision, setting.optimize,
        {"spec": job.spec, "fusion": job.arch.fusion, "window": job.window}, int8_recipe=setting.recipe,
        calibration=calibration, smoothing_choices=job.smoothing_choices,
    )  # fmt: skip
    if misses:
        optimizations["fallback_from"] = list(misses)
    write_tokenizer(job.tokenizer, bundle)
    manifest = job.manifest(setting.precision, optimizations)
    write_manifest(bundle, manifest)
    manifest.parity = (job.check or check_embedding)(job, bundle, setting)
    write_manifest(bundle, manifest)
    return manifest.parity, bool(optimizations["optimize"])


def check_embedding(job: Job, bundle: Path, setting: Setting) -> dict[str, Any]:
    """An embedding bundle's parity on the validation grid, then its precision's quality gate."""
    job.say("validating against PyTorch")
    try:
        embedder = _validation_embedder(bundle, setting.precision, job.say)
    except BundleError as e:  # a variant pass wrote a graph onnxruntime refuses
        raise UnsupportedModelError(
            f"the {setting.label} graph of architecture {job.spec.model_type!r} cannot be run by onnxruntime "
            f"({str(e)[:400]}); export it in fp32"
        ) from e
    report = validate(embedder, job.model, job.hf_tok, job.validate_texts, log=job.say)
    job.say(f"parity: min cosine {report['min_cosine']:.7f}, max abs diff {report['max_abs_diff']:.2e} "
            f"over {report['texts']} texts")  # fmt: skip
    job.say(f"quality gate ({setting.precision.value}) on {len(job.gate_texts)} texts")
    report["gate"] = gate = quality_gate(embedder, job.model, job.hf_tok, job.gate_texts, job.thresholds,
                                         log=job.say, reference=job.reference())  # fmt: skip
    job.say(f"gate: mean cosine {gate['mean_cos']:.6f}, min {gate['min_cos']:.6f}, "
            f"top-10 agreement {gate['topk']:.4f}: passed")  # fmt: skip
    del embedder
    return report


def _validation_embedder(bundle: Path, precision: Precision, say: Callable[[str], None]) -> Embedder:
    """The bundle on CPU, where export validates; a variant made for another provider is said so once
    here (the numbers record where they were measured), not warned about at every load."""
    if Device.CPU not in MADE_FOR[precision]:
        say(f"{precision.value} is made for {'/'.join(d.value for d in MADE_FOR[precision])}: validating on cpu, "
            "and the manifest records that the numbers were measured there")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderWarning)
        return Embedder(bundle)


# The candidate run on OpenVINO's bf16 (``auto`` records it, never picks it: see the module doc)
OPENVINO_BF16 = "fp32, unfused, device openvino bf16"
_OPENVINO_BF16 = {"device": "openvino", "precision_hint": "bf16"}
_PLAIN_FP32 = Setting(Precision.FP32, False).label  # the graph OpenVINO takes (no onnxruntime fusions)


def _openvino_bf16(job: Job, passed: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any] | None:
    """The gate of the unfused fp32 bundle on OpenVINO's bf16, where OpenVINO is installed and the CPU
    has bf16 (None elsewhere); a ``GateError`` where it misses."""
    if _PLAIN_FP32 not in passed or openvino_version() is None or InferencePrecision.BF16 not in cpu_precision_hints():
        return None
    return (job.bf16_gate or _embedding_bf16_gate)(job, passed[_PLAIN_FP32][0])


def _embedding_bf16_gate(job: Job, plain: Path) -> dict[str, Any]:
    job.say(f"quality gate ({OPENVINO_BF16}) on {len(job.gate_texts)} texts")
    embedder = Embedder(plain, verify=False, **_OPENVINO_BF16)
    return quality_gate(embedder, job.model, job.hf_tok, job.gate_texts, job.thresholds, log=job.say,
                        reference=job.reference())  # fmt: skip


def _fastest(job: Job, passed: dict[str, tuple[Path, dict[str, Any]]], misses: list[dict[str, Any]]) -> Path:
    try:
        ov_gate = _openvino_bf16(job, passed)
    except (ParityError, BundleError, ProviderError) as e:  # a miss, or a graph OpenVINO refuses: recorded
        ov_gate = None
        report = getattr(e, "report", {}) or {}
        misses.append({"setting": OPENVINO_BF16, "failed": str(e).splitlines()[0][:300],
                       **_numbers(report)})  # fmt: skip
    timed: dict[str, tuple[Path, dict[str, Any]]] = {k: (b, {}) for k, (b, _) in passed.items()}
    if ov_gate is not None:
        timed[OPENVINO_BF16] = (passed[_PLAIN_FP32][0], _OPENVINO_BF16)
    all_speeds = (job.time_settings or (lambda t: measure_speed(t, job.gate_texts[:SPEED_TEXTS])))(timed)
    speed = {k: v for k, v in all_speeds.items() if k != OPENVINO_BF16}
    winner, tied = pick_fastest(speed)
    unit = job.unit
    job.say(f"speed ({unit} per CPU-second, one thread): " + ", ".join(f"{k} {v:.1f}" for k, v in speed.items())
            + f" -> {winner}")  # fmt: skip
    candidates = [
        {"setting": k, "passed": True, "texts_per_cpu_second": round(speed[k], 2),
         **_numbers(r.get("gate") or {})}
        for k, (_, r) in passed.items()
    ] + [{**m, "passed": False} for m in misses]  # fmt: skip
    record: dict[str, Any] = {}
    preferred = None
    if ov_gate is not None:
        ov_speed = all_speeds[OPENVINO_BF16]
        candidates.append({"setting": OPENVINO_BF16, "passed": True, "texts_per_cpu_second": round(ov_speed, 2),
                           **_numbers(ov_gate)})  # fmt: skip
        if pick_fastest({winner: speed[winner], OPENVINO_BF16: ov_speed})[0] == OPENVINO_BF16:
            times = round(ov_speed / speed[winner], 2)
            preferred = _preferred_setting(passed[winner][0], passed[_PLAIN_FP32][0], times, unit)
            record["faster_here"] = {
                "setting": OPENVINO_BF16, "times_the_chosen": times,
                "how": f"the bundle holds it ({PREFERRED_FOLDER}/) and runs it by default (device 'auto') where "
                       f"OpenVINO is installed and the CPU has {', '.join(preferred['cpu_flags'])}; "
                       "device 'cpu' runs the bundle's own graph",
            }  # fmt: skip
            job.say(f"faster here: {OPENVINO_BF16} ({ov_speed:.1f} {unit} per CPU-second, "
                    f"{times:.2f}x {winner}): {record['faster_here']['how']}")  # fmt: skip
    if tied:
        why = (f"within {SPEED_TIE:.0%} of the fastest of the settings that passed their gates on this machine, "
               f"tied with {', '.join(tied)}: the first in the export's order of preference wins "
               f"({speed[winner]:.1f} {unit} per CPU-second, fastest {max(speed.values()):.1f})")  # fmt: skip
    else:
        runner_up = sorted(speed.values())[-2] if len(speed) > 1 else None
        why = (f"fastest of the settings that passed their gates on this machine ({speed[winner]:.1f} {unit} "
               f"per CPU-second" + (f", next {runner_up:.1f}" if runner_up else "") + ")")  # fmt: skip
    bundle, _ = passed[winner]
    _record_auto(bundle, {"chosen": winner, "why": why, "candidates": candidates, "measured": _how(unit), **record},
                 preferred)  # fmt: skip
    return bundle


def _preferred_setting(bundle: Path, plain_fp32: Path, times: float, unit: str) -> dict[str, Any]:
    """Copy the plain fp32 bundle into ``bundle``'s ``preferred/`` and return the manifest's
    ``preferred`` record: OpenVINO's bf16, needing the CPU units it was measured with here."""
    flags, _ = cpu_flags()
    needs = ["amx_bf16"] if flags and "amx_bf16" in flags else ["avx512_bf16"]
    target = bundle / PREFERRED_FOLDER
    shutil.copytree(plain_fp32, target)
    pinned = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))[SELF_HASH_KEY]
    return {"bundle": PREFERRED_FOLDER, "device": _OPENVINO_BF16["device"],
            "precision_hint": _OPENVINO_BF16["precision_hint"], "cpu_flags": needs, "times_the_bundle": times,
            "measured": _how(unit), "manifest_sha256": pinned}  # fmt: skip


def pick_fastest(speed: dict[str, float], tie: float = SPEED_TIE) -> tuple[str, list[str]]:
    """The winner of ``speed`` (texts per CPU-second, in the order of preference) and the other
    settings it tied with: the first setting within ``tie`` of the fastest wins."""
    top = max(speed.values())
    within = [k for k, v in speed.items() if v >= top * (1 - tie)]
    return within[0], within[1:]


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The gate numbers of a report (an embedding's or a reranker's), for a candidate's record."""
    return {k: report[k] for k in GATE_NUMBERS if k in report}


def _how(unit: str = "texts") -> str:
    return (
        f"{SPEED_TEXTS} gate {unit} at batch 32, one intra-op thread, process CPU time, best of "
        f"{SPEED_ROUNDS} rounds alternating between candidates (CPU time is what a loaded machine least disturbs); "
        f"a candidate {SPEED_DROP}x slower than the fastest after a round is not timed again"
    )


def _record_auto(bundle: Path, record: dict[str, Any], preferred: dict[str, Any] | None) -> None:
    from embedrt._bundle import load_manifest

    manifest = load_manifest(bundle, verify=False)
    manifest.optimizations["auto"] = record
    manifest.preferred = preferred
    write_manifest(bundle, manifest)


def measure_speed(
    bundles: dict[str, tuple[Path, dict[str, Any]]], texts: list[Any], rounds: int = SPEED_ROUNDS, *,
    load: Callable[..., Any] = Embedder, run: Callable[[Any, list[Any]], Any] = lambda m, x: m.encode(x, batch_size=32),
) -> dict[str, float]:
    """Inputs per CPU-second of each (bundle, options of ``load``) on ``texts`` (``run(model, texts)``;
    default: ``Embedder.encode`` at batch 32; one thread, best of ``rounds``, alternating; a candidate
    ``SPEED_DROP`` times slower than the fastest after a round is not timed again)."""
    models = {k: load(b, threads=1, verify=False, **options) for k, (b, options) in bundles.items()}
    best = dict.fromkeys(models, float("inf"))
    for model in models.values():
        run(model, texts[:32])  # warm-up
    timing = list(models)
    for r in range(rounds):
        order = timing[r % len(timing) :] + timing[: r % len(timing)]
        for k in order:
            t0 = time.process_time()
            run(models[k], texts)
            best[k] = min(best[k], time.process_time() - t0)
        fastest = min(best.values())
        timing = [k for k in timing if best[k] <= SPEED_DROP * fastest]
    return {k: len(texts) / max(v, 1e-9) for k, v in best.items()}

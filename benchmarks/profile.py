"""Where an embedrt bundle spends its time: onnxruntime's profiler, summed per operator type."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any


def op_shares(
    bundle: str, texts: list[str], threads: int, max_length: int, reps: int = 3
) -> list[tuple[str, float]]:
    """(operator type, share of node time) for ``texts`` as one batch, largest first."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    enc = tok.encode_batch(texts)
    import numpy as np

    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
    feed = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "p")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(Path(bundle) / "model.onnx"), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        for _ in range(reps):
            sess.run(["sentence_embedding"], feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_op[ev["args"].get("op_name", "?")] += ev["dur"]
    total = sum(per_op.values()) or 1.0
    return sorted(((op, d / total) for op, d in per_op.items()), key=lambda x: -x[1])


def profile_bundles(
    specs: list[dict[str, Any]], sets: dict[str, list[str]], threads: int, notes: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in specs:
        if (
            s["runner"] != "embedrt"
            or s["name"] in notes
            or s.get("params", {}).get("device", "cpu") != "cpu"
        ):
            continue
        try:
            out[s["name"]] = {
                str(n): op_shares(s["params"]["bundle"], sets[f"len{n}"], threads, 512)
                for n in (16, 128, 512)
                if f"len{n}" in sets
            }
        except Exception as e:  # the profile is a diagnosis: a failure is recorded, not fatal
            out[s["name"]] = f"profile failed: {type(e).__name__}: {e}"[:300]
    return out

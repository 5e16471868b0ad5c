"""A bundle holding a preferred setting, built by hand from two exports (tests of ``device="auto"``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from embedrt._bundle import MANIFEST_NAME, SELF_HASH_KEY, load_manifest, write_manifest


def hold_preferred(own: Path, plain: Path, where: Path, **preferred: object) -> Path:
    """A copy of the bundle ``own`` holding ``plain`` as its preferred setting: OpenVINO in fp32 (which
    every CPU runs), needing no CPU flag unless ``preferred`` says otherwise."""
    bundle = where / "bundle"
    shutil.copytree(own, bundle)
    shutil.copytree(plain, bundle / "preferred")
    pinned = json.loads((plain / MANIFEST_NAME).read_text())[SELF_HASH_KEY]
    manifest = load_manifest(bundle)
    manifest.preferred = {"bundle": "preferred", "device": "openvino", "precision_hint": "fp32", "cpu_flags": [],
                          "times_the_bundle": 1.2, "manifest_sha256": pinned, **preferred}  # fmt: skip
    write_manifest(bundle, manifest)
    return bundle

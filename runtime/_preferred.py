"""A bundle's preferred setting, and ``device="auto"``.

``export --precision auto`` times its candidates on the machine it runs on. Where the fastest there
is a setting onnxruntime's CPU provider cannot run (the plain fp32 graph on OpenVINO in bf16, on CPUs
with AMX), the bundle keeps its own graph, the CPU provider's fastest, which runs on every CPU, and
holds the faster setting's graph too: a whole bundle of its own in the subfolder ``preferred/``. The
manifest's ``preferred`` says how that bundle runs (device, precision hint), what it needs (the
engine, and the CPU units it was measured with) and the sha256 of its manifest, which pins its files.

``device="auto"``, the default of every entry point, runs the preferred setting wherever the loading
machine has what it needs, and the bundle's own graph on the CPU provider elsewhere (a bundle without
``preferred``: always). An explicit device, precision hint or provider options run what they name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._bundle import MANIFEST_NAME, SELF_HASH_KEY, Manifest, load_manifest
from ._errors import BundleError
from ._int8_cpu import cpu_flags
from ._session import check_streams, provider_available
from ._types import AUTO, Device, parse

PREFERRED_FOLDER = "preferred"


@dataclass(frozen=True)
class DeviceChoice:
    """What ``device`` (and the bundle) resolve to on this machine."""

    path: Path  # the bundle whose graph runs: the one asked for, or its preferred/ subfolder
    device: Device
    precision_hint: str | None
    why: str  # how it was chosen, for ``info``, ``/info`` and the logs


def check_device(device: object) -> Device | str:
    """``device`` checked: a ``Device``, or ``"auto"``; a ``ValueError`` naming the choices otherwise."""
    if device == AUTO:
        return AUTO
    try:
        return parse(Device, device, "device")
    except ValueError as e:
        raise ValueError(f"{e} (or 'auto': the bundle's preferred setting where this machine can run it)") from None


def check_device_streams(device: object, streams: object) -> tuple[Device | str, int | str]:
    """``device`` (``check_device``) and ``streams`` (``check_streams``) checked before the bundle is
    read: ``"auto"`` resolves to the CPU provider or OpenVINO, which take the same streams."""
    where = check_device(device)
    return where, check_streams(where if isinstance(where, Device) else Device.CPU, streams)


def held_bundle(bundle: Path, preferred: dict[str, Any]) -> Path:
    """The folder of ``bundle``'s preferred setting."""
    return bundle / str(preferred.get("bundle") or PREFERRED_FOLDER)


def missing_here(preferred: dict[str, Any]) -> str | None:
    """What this machine lacks to run a ``preferred`` setting (None: nothing)."""
    device = parse(Device, preferred.get("device"), "preferred device")
    if not provider_available(device):
        return f"{device.value} is not installed" + (" (pip install 'embedrt[openvino]')" if device is Device.OPENVINO else "")
    needs = list(preferred.get("cpu_flags") or [])
    flags, _ = cpu_flags()
    lacking = [f for f in needs if flags is None or f not in flags]
    if lacking:
        return f"this CPU lacks {', '.join(lacking)}, which the setting was measured faster with"
    return None


def choose_device(
    bundle: Path,
    manifest: Manifest,
    device: Device | str,
    precision_hint: str | None,
    provider_options: dict[str, Any] | None,
    verify: bool,
) -> DeviceChoice:
    """Where ``bundle`` runs: ``device`` itself, or for ``"auto"`` its preferred setting where this
    machine can run it (see the module doc), else the CPU provider."""
    if isinstance(device, Device):
        return DeviceChoice(bundle, device, precision_hint, f"{device.value}, as asked")
    preferred = manifest.preferred
    if preferred is None:
        return DeviceChoice(bundle, Device.CPU, precision_hint, "cpu (auto: the bundle has no preferred setting)")
    setting = f"{preferred.get('device')} {preferred.get('precision_hint') or ''}".strip()
    if precision_hint is not None or provider_options:
        asked = "a precision hint" if precision_hint is not None else "provider options"
        return DeviceChoice(bundle, Device.CPU, precision_hint,
                            f"cpu (auto: {asked} given, so not the preferred {setting})")  # fmt: skip
    lacking = missing_here(preferred)
    if lacking is not None:
        return DeviceChoice(bundle, Device.CPU, None, f"cpu (auto: the preferred {setting} not run: {lacking})")
    path = held_bundle(bundle, preferred)
    _check_pinned(path, preferred, verify)
    times = preferred.get("times_the_bundle")
    return DeviceChoice(path, parse(Device, preferred["device"], "preferred device"), preferred.get("precision_hint"),
                        f"{setting} (auto: the bundle's preferred setting"
                        + (f", {times}x its own graph where it was exported" if times else "") + ")")  # fmt: skip


def _check_pinned(path: Path, preferred: dict[str, Any], verify: bool) -> None:
    """The preferred bundle is there, and (``verify``) its manifest is the one the bundle pins."""
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        raise BundleError(
            f"bundle {str(path.parent)!r} prefers the setting in {path.name}/, which is missing: copy the whole "
            "bundle folder, or load it with device='cpu'"
        )
    if not verify:
        return
    try:
        claimed = json.loads(manifest.read_text(encoding="utf-8")).get(SELF_HASH_KEY)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise BundleError(f"{manifest} is not a valid manifest ({e}); export the model again") from e
    if claimed != preferred.get("manifest_sha256"):
        raise BundleError(
            f"{manifest} is not the one bundle {str(path.parent)!r} was exported with (its sha256 differs from "
            "the manifest's 'preferred'); export the model again, or pass verify=False (Python) or --no-verify "
            "(CLI) if the change is intended"
        )


def pin_setting(model: str | Path, device: object, precision_hint: str | None) -> tuple[str | Path, DeviceChoice]:
    """For work spread over processes or machines (the corpus job, Ray actors): ``device`` resolved
    once, here, so that every part runs the same setting (``auto`` could differ between machines).
    Returns the model to load there (``model``, or the preferred setting's bundle: its subfolder, of
    an object-store URI too) and the choice, whose device and hint are to be passed as they are."""
    from ._objects import is_uri, local_bundle

    local = local_bundle(model)
    choice = choose_device(local, load_manifest(local, verify=False), check_device(device), precision_hint, None, True)
    if choice.path == local:
        return model, choice
    return (f"{str(model).rstrip('/')}/{choice.path.name}" if is_uri(str(model)) else choice.path), choice

"""A new user's first hour: the set-up scripts, README's commands, and what export prints."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _fake_distribution_python(tmp_path: Path) -> Path:
    """A ``python3`` that, like a PEP 668 distribution Python, refuses ``-m pip`` but makes venvs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        'if [[ "$1" == "-m" && "$2" == "pip" ]]; then\n'
        '    echo "error: externally-managed-environment" >&2; exit 1\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return fake


def _setup(root: Path, fake: Path) -> subprocess.CompletedProcess[str]:
    script = (
        f"set -euo pipefail; source {REPO / 'scripts/venv.sh'}; embedrt_venv {root}; "
        "command -v python; python -m pip --version"
    )
    # the setup must find the fake python3 on PATH, whatever Python the caller chose for its own venv
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "EMBEDRT_PYTHON")}
    env["PATH"] = f"{fake.parent}:/usr/bin:/bin"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)


def test_setup_makes_and_reuses_a_project_venv_on_a_pep668_python(tmp_path: Path) -> None:
    fake = _fake_distribution_python(tmp_path)
    root = tmp_path / "clone"
    root.mkdir()
    first = _setup(root, fake)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == str(root / ".venv/bin/python")  # `python` is the venv's now
    assert "pip" in first.stdout and f"creating {root / '.venv'}" in first.stderr
    made = (root / ".venv/bin/python").stat().st_ino
    second = _setup(root, fake)
    assert second.returncode == 0, second.stderr
    assert f"using {root / '.venv'}" in second.stderr and (root / ".venv/bin/python").stat().st_ino == made
    calls = (tmp_path / "calls.log").read_text()
    assert "-m venv" in calls and "-m pip" not in calls  # the system Python only made the venv


def test_setup_says_what_to_do_when_venv_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"  # a Debian Python without python3-venv
    fake.write_text('#!/usr/bin/env bash\nif [[ "$1" == "-m" ]]; then echo "No module named venv" >&2; exit 1; fi\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    r = _setup(tmp_path / "clone", fake)
    assert r.returncode != 0 and "apt install python3-venv" in r.stderr
    assert not (tmp_path / "clone/.venv").exists()


@pytest.mark.parametrize("script", ["examples/quickstart.sh", "tests/run.sh"])
def test_readme_commands_install_into_the_venv_only(script: str) -> None:
    lines = (REPO / script).read_text().splitlines()
    setup = next(i for i, line in enumerate(lines) if line.strip().startswith("embedrt_venv "))
    assert any(line.strip() == "source scripts/venv.sh" for line in lines[:setup])
    installs = [i for i, line in enumerate(lines) if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and min(installs) > setup
    assert not any(re.search(r"(?<!-m )\bpip3? install", line) for line in lines)  # always `python -m pip` (the venv's)


def test_quickstart_is_quick_and_installs_what_its_next_steps_use() -> None:
    text = (REPO / "examples/quickstart.sh").read_text()
    validate = next(line for line in text.splitlines() if line.startswith("embedrt validate"))
    assert "--no-gate" in validate  # export ran the 1000-text gate already
    assert '".[export,dataset,parquet,server]"' in text and "embedrt serve" in text and "embed-dataset" in text


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["bash tests/run.sh"]
    assert "bash tests/run.sh " in README and "bash examples/quickstart.sh " in README
    assert ".venv" in README.split("## Installing")[0]


def test_readme_install_table_shows_the_from_a_clone_form() -> None:
    table = README.split("## Installing")[1].split("\n\n")[1]
    for extra in ("export", "server", "parquet", "dataset", "ray"):
        assert f'pip install "embedrt[{extra}]"' in table and f'pip install ".[{extra}]"' in table


def test_export_drops_onnxruntimes_notices_about_nothing_wrong(tiny_bert_bundle: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from embedrt.export._quantize import RECIPES, quantize_int8
    from embedrt.export._variants import apply_variant, without_tool_notices

    caplog.set_level(logging.WARNING)
    quantize_int8(tiny_bert_bundle / "model.onnx", tmp_path / "bare.onnx", RECIPES["dynamic"])
    assert "pre-processing before quantization" in caplog.text  # what onnxruntime says on its own
    caplog.clear()
    apply_variant(tiny_bert_bundle / "model.onnx", tmp_path / "model.onnx", "int8", False, {},
                  int8_recipe=RECIPES["dynamic"])  # fmt: skip
    assert "pre-processing" not in caplog.text
    shapes = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    with without_tool_notices():  # only those notices: every other message still passes
        logging.warning("Please consider to run pre-processing before quantization. Refer to example: ...")
        shapes.warning("Unable to determine if sequence <= Reshape_1_o0__d2, treat as equal")
        logging.warning("a useful warning")
        shapes.warning("a useful shape warning")
    logging.warning("Please consider to run pre-processing before quantization, outside")
    assert caplog.messages == ["a useful warning", "a useful shape warning",
                               "Please consider to run pre-processing before quantization, outside"]  # fmt: skip

# shellcheck shell=bash
# Sourced by examples/quickstart.sh and tests/run.sh: make (once) and then use the project's virtual
# environment, .venv in the repository root, so that nothing is installed into the system's Python
# (which a PEP 668 distribution refuses with "externally-managed-environment") or into whatever
# environment happens to be first on PATH. A second run reuses the venv.
#
#   embedrt_venv REPO_ROOT      after it, `python`, `pip` and `embedrt` are the venv's
#
# EMBEDRT_PYTHON: the Python that makes the venv (default: python3); it must be 3.10 or newer.

embedrt_venv() {
    local venv="$1/.venv" py="${EMBEDRT_PYTHON:-python3}"
    if [[ -x "$venv/bin/python" ]]; then
        if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
            echo "error: $venv exists but its python or pip does not run (was Python moved or upgraded?):" \
                "remove it (rm -rf $venv) and run again" >&2
            return 1
        fi
        echo "[setup] using $venv ($("$venv/bin/python" -V 2>&1))" >&2
    else
        if ! command -v "$py" >/dev/null 2>&1; then
            echo "error: $py not found: install Python 3.10 or newer, or set EMBEDRT_PYTHON" >&2
            return 1
        fi
        if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
            echo "error: $py is $("$py" -V 2>&1); embedrt needs Python 3.10 or newer (set EMBEDRT_PYTHON)" >&2
            return 1
        fi
        echo "[setup] creating $venv with $("$py" -V 2>&1)" >&2
        if ! "$py" -m venv "$venv"; then
            rm -rf "$venv"
            echo "error: '$py -m venv' failed; on Debian or Ubuntu the venv module is a package:" \
                "sudo apt install python3-venv" >&2
            return 1
        fi
    fi
    export VIRTUAL_ENV="$venv"
    export PATH="$venv/bin:$PATH"
    hash -r
}

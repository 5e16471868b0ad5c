"""``python -m embedrt.server BUNDLE ...``: the same as ``embedrt serve BUNDLE ...``."""

from __future__ import annotations

import argparse
import sys

from ._cli import add_serve_arguments, run_serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m embedrt.server", description="Serve an embedrt bundle over HTTP."
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

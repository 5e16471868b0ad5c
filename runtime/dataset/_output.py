"""The output folder of a corpus job: Parquet parts, a journal of finished parts, a manifest.

    OUTPUT/
      part-000000.parquet     one per input part, written whole (temporary name, fsync, rename)
      part-000001.parquet
      _manifest.json          what produced the folder (bundle, input fingerprint, options), and at
                              the end the totals; rewritten whole
      _parts.jsonl            one line appended (and fsynced) per finished part: the journal a
                              resume trusts; a torn last line is ignored
      _bad_rows.jsonl         every bad row (skip / null), written at the end

Parquet readers (pyarrow.dataset, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``,
so ``pyarrow.parquet.read_table(OUTPUT)`` reads the parts alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .._errors import EmbedrtError
from .._files import TMP_GLOB, written_whole

MANIFEST = "_manifest.json"
JOURNAL = "_parts.jsonl"
BAD_ROWS = "_bad_rows.jsonl"
FORMAT = "embedrt-dataset"
VERSION = 1
_OURS = re.compile(r"^(part-\d{6}\.parquet|_manifest\.json|_parts\.jsonl|_bad_rows\.jsonl|\..*\.tmp-\w+)$")


class OutputError(EmbedrtError, ValueError):
    """OUTPUT cannot be written: it holds another job's output, or files embedrt did not write."""


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` whole and durably: ``write`` fills a temporary file, fsynced, renamed, folder fsynced."""
    with written_whole(path, durable=True) as tmp, tmp.open("wb") as f:
        write(f)


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode()
    write_atomic(path, lambda f: f.write(data))


class OutputFolder:
    """Opens OUTPUT for a job with ``identity``; knows which parts a previous run finished."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def open(
        self, identity: dict[str, Any], overwrite: bool, still_valid: Callable[[int, dict[str, Any]], bool]
    ) -> dict[int, dict[str, Any]]:
        """Prepare the folder; returns the finished parts ({index: journal entry}) a resume may keep.

        If only the input changed (an edited file), the finished parts for which ``still_valid`` holds
        are kept and the others deleted; if none holds, the folder is another input's and is refused."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output {str(self.path)!r} is a file; expected a folder for the Parquet parts")
        self.path.mkdir(parents=True, exist_ok=True)
        foreign = sorted(p.name for p in self.path.iterdir() if not _OURS.match(p.name))
        if foreign:
            raise OutputError(
                f"output folder {str(self.path)!r} holds files embedrt did not write ({', '.join(foreign[:5])}); "
                "choose an empty or new folder"
            )
        for stale in self.path.glob(TMP_GLOB):  # left by a run killed while writing a file
            stale.unlink()
        old = self._read_manifest()
        self.changed = 0
        if old is not None and not overwrite:
            mismatch = _mismatch(old.get("identity", {}), identity)
            done = self._finished_parts() if mismatch in (None, "input") else {}
            if mismatch == "input":
                kept = {i: e for i, e in done.items() if still_valid(i, e)}
                if kept or not done:
                    self.changed = len(done) - len(kept)
                    for i in sorted(set(done) - set(kept)):
                        (self.path / done[i]["file"]).unlink(missing_ok=True)
                    self._rewrite_journal(kept)
                    done, mismatch = kept, None
            if mismatch:
                raise OutputError(
                    f"output folder {str(self.path)!r} was made from another {_LABELS.get(mismatch, mismatch)}; "
                    "pass overwrite=True (--overwrite) to replace it, or choose another folder"
                )
        elif old is None and any(self.path.iterdir()) and not overwrite:
            raise OutputError(
                f"output folder {str(self.path)!r} holds parts but no {MANIFEST}; pass overwrite=True "
                "(--overwrite) to replace them"
            )
        else:
            for p in self.path.iterdir():
                p.unlink()
            done = {}
        manifest = {"format": FORMAT, "version": VERSION, "complete": False, "identity": identity}
        if old is not None and not overwrite:
            manifest = {**old, "identity": identity, "complete": False}
        write_json(self.path / MANIFEST, manifest)
        return done

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise OutputError(f"{path} is not valid JSON ({e}); pass --overwrite to start over") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise OutputError(f"{path} was not written by embedrt embed-dataset; choose another folder")
        if data.get("version", 0) > VERSION:
            raise OutputError(f"{path} was written by a newer embedrt (version {data.get('version')}); upgrade embedrt")
        return data

    def _finished_parts(self) -> dict[int, dict[str, Any]]:
        """Journal entries whose part file is present with the recorded size (the journal is the truth)."""
        done: dict[int, dict[str, Any]] = {}
        path = self.path / JOURNAL
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                file = self.path / entry["file"]
                if file.is_file() and file.stat().st_size == entry["bytes"]:
                    done[int(entry["part"])] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
        self._rewrite_journal(done)  # the good lines only, so the next append does not land on a torn one
        return done

    def _rewrite_journal(self, done: dict[int, dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for _, e in sorted(done.items())).encode()
        write_atomic(self.path / JOURNAL, lambda f: f.write(data))

    def write_part(self, name: str, write: Callable[[IO[bytes]], Any], entry: dict[str, Any]) -> dict[str, Any]:
        """Write one part whole, then record it in the journal (fsynced)."""
        path = self.path / name
        write_atomic(path, write)
        return self.record({**entry, "file": name, "bytes": path.stat().st_size})

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append a finished part (already written whole) to the journal."""
        with (self.path / JOURNAL).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def finish(self, manifest_update: dict[str, Any], bad_rows: list[dict[str, Any]]) -> None:
        if bad_rows:
            data = "".join(json.dumps(b, ensure_ascii=False, default=str) + "\n" for b in bad_rows).encode()
            write_atomic(self.path / BAD_ROWS, lambda f: f.write(data))
        else:
            (self.path / BAD_ROWS).unlink(missing_ok=True)
        old = self._read_manifest() or {}
        write_json(self.path / MANIFEST, {**old, **manifest_update, "complete": True})


_LABELS = {"bundle": "model bundle", "input": "input (none of its finished parts matches this input)"}


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first identity field that differs, described for the user (None if the job is the same):
    "bundle" or "input" (see ``_LABELS``), else the option with both values. Options come first: an
    edited input may resume, another option may not."""
    for key in sorted(set(old) | set(new), key=lambda k: (k in _LABELS, k)):
        if key == "on_error" and old.get(key) == "fail":
            continue  # a run that stopped at a bad row wrote no bad rows: any policy may go on from it
        if old.get(key) != new.get(key):
            return key if key in _LABELS else f"option {key!r} ({old.get(key)!r} there, {new.get(key)!r} now)"
    return None

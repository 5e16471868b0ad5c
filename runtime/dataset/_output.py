"""The output folder of a corpus job: Parquet parts, a journal of finished parts, a manifest.

    OUTPUT/
      part-000000.parquet     one per input part, written whole (temporary name, fsync, rename)
      part-000001.parquet
      _manifest.json          what produced the folder (bundle, input fingerprint, options) and what
                              the run plans (input rows, parts), and at the end the totals;
                              rewritten whole
      _parts.jsonl            one line appended (and fsynced) per finished part, with when: the
                              journal a resume trusts; a torn last line is ignored
      _bad_rows.jsonl         every bad row (skip / null), written at the end
      _lock.json              while a run writes the folder: its claim, which refuses a second run
                              (``_claim``)

On an object store (``s3://``, ``gs://``) the journal is ``_journal/part-000001.json``, ... (one
object per finished part) and each file is moved into place whole (see ``_storage``).

Parquet readers (pyarrow.dataset, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``,
so ``pyarrow.parquet.read_table(OUTPUT)`` reads the parts alone.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from .._errors import EmbedrtError
from ._claim import LOCK, Claim
from ._sources import Moved
from ._storage import JOURNAL_DIR, entry_line, output_folder

MANIFEST = "_manifest.json"
SCHEMA = "schema"  # the output's columns and types, in a job's identity
JOURNAL = "_parts.jsonl"
BAD_ROWS = "_bad_rows.jsonl"
FORMAT = "embedrt-dataset"
VERSION = 1
_OURS = re.compile(
    rf"^(part-\d{{6}}\.parquet|_manifest\.json|_parts\.jsonl|_bad_rows\.jsonl|_input_scan\.(json|arrow)|_lock\.json|{JOURNAL_DIR}|\..*\.tmp-\w+)$"
)


_PART = re.compile(r"^part-\d{6}\.parquet$")


class OutputError(EmbedrtError, ValueError):
    """OUTPUT cannot be written: it holds another job's output, or files embedrt did not write."""


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode()


class OutputFolder:
    """Opens OUTPUT (a local folder or an object-store URI) for a job with ``identity``; knows which
    parts a previous run finished."""

    def __init__(self, where: str | Path) -> None:
        self.where = str(where)
        self.store = output_folder(self.where)
        self.claim = Claim()

    @contextlib.contextmanager
    def claimed(self, say: Callable[[str], None], dry_run: bool = False) -> Iterator[None]:
        """Hold this run's claim on the folder for the block (``_claim``), making the folder; a folder
        the block leaves empty is removed again if the claim made it. ``dry_run``: neither (a dry
        run reads the folder only)."""
        kind = self.store.kind()
        if kind == "file":
            raise OutputError(f"output {self.where!r} is a file; expected a folder for the Parquet parts")
        self.absent = kind is None
        if dry_run:
            yield
            return
        self.store.make()
        try:
            with self.store.claim(say) as self.claim:
                yield
        finally:
            if kind is None:  # made here
                self.store.remove_if_empty()

    def open(
        self, identity: dict[str, Any], overwrite: bool, still_valid: Callable[[int, dict[str, Any]], bool],
        planned: dict[str, Any] | None = None,
        moves: Callable[[dict[int, dict[str, Any]], set[int]], dict[int, Moved]] | None = None,
        dry_run: bool = False,
        edited: Callable[[Any], bool] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """Prepare the folder (made and claimed by ``claimed``); returns the finished parts ({index: journal entry}) a resume may keep.
        ``planned`` (what this run will make: the input, the number of parts) goes into the manifest
        now, so that ``output_status`` can tell how far a run is.

        If only the input changed (an edited file), the finished parts for which ``still_valid`` holds
        are kept; those that ``moves`` (given the entries and the indexes kept) finds elsewhere in the
        plan now are moved there (``_move``); the others are deleted. If none is kept or moved, the
        folder is another input's and is refused, unless ``edited`` (given the manifest's ``input``
        record) says this input is that one edited (a folder of documents, every part touched).

        ``dry_run``: the same decisions and refusals, and the parts a run would keep (moved ones under
        their new numbers), with nothing written, moved or deleted."""
        self.changed = self.moved = 0
        if dry_run and self.absent:
            return {}
        foreign = sorted(n for n in self.store.names() if not _OURS.match(n))
        if foreign:
            raise OutputError(
                f"output folder {self.where!r} holds files embedrt did not write ({', '.join(foreign[:5])}); "
                "choose an empty or new folder"
            )
        if not dry_run:
            self.store.clean_temporaries()
        old = self.read_manifest()
        if old is not None and not overwrite:
            mismatch = _mismatch(old.get("identity", {}), identity)
            done = {} if mismatch not in (None, "input") else finished_parts(self.store) if dry_run else self._finished_parts()
            if mismatch == "input":
                kept = {i: e for i, e in done.items() if still_valid(i, e)}
                moved = moves(done, set(kept)) if moves is not None else {}
                if kept or moved or not done or (edited is not None and edited(old.get("input"))):
                    self.changed, self.moved = len(done) - len(kept) - len(moved), len(moved)
                    if dry_run:
                        return {**kept, **{int(m.entry["part"]): m.entry for m in moved.values()}}
                    for i in sorted(set(done) - set(kept) - set(moved)):
                        self.store.delete(done[i]["file"])
                    self._rewrite_journal({**kept, **{i: done[i] for i in moved}})
                    kept.update(self._move(kept, {done[i]["file"]: m for i, m in moved.items()}))
                    done, mismatch = kept, None
            if mismatch:
                raise OutputError(
                    f"output folder {self.where!r} was made from another {_LABELS.get(mismatch, mismatch)}; "
                    "pass overwrite=True (--overwrite) to replace it, or choose another folder"
                )
            if dry_run:
                return done
            journaled = {e["file"] for e in done.values()}
            for name in self.store.names():  # written by a run killed before its journal entry: its part may
                if _PART.match(name) and name not in journaled:  # be gone from this plan, readers would find it
                    self.store.delete(name)
        elif old is None and set(self.store.names()) - {LOCK} and not overwrite:
            raise OutputError(
                f"output folder {self.where!r} holds parts but no {MANIFEST}; pass overwrite=True "
                "(--overwrite) to replace them"
            )
        else:
            if dry_run:
                return {}
            for name in self.store.names():
                if name != LOCK:
                    self.store.delete(name)
            done = {}
        manifest = {"format": FORMAT, "version": VERSION}
        if old is not None and not overwrite:
            manifest = old
        self._write_manifest({**manifest, **(planned or {}), "complete": False, "identity": identity})
        return done

    def _move(self, kept: dict[int, dict[str, Any]], moved: dict[str, Moved]) -> dict[int, dict[str, Any]]:
        """Put each finished part of ``moved`` ({its file: where it goes}) under its new name, its ids
        shifted where they are row numbers; their journal entries. Every step leaves a folder that a
        killed run's successor reads right: each part goes first to a temporary name (which the next
        run deletes; a part renamed there has lost its file, so its entry no longer counts), then the
        journal is rewritten to the ``kept`` parts alone, the old files deleted, the new ones renamed
        into place and only then journaled (a file in place without its entry is deleted by the next
        run). The worst a kill does is lose the moved parts, computed again then."""
        staged: dict[str, tuple[dict[str, Any], int]] = {}
        for old, move in moved.items():
            tmp = f".{move.entry['file']}.tmp-moved"
            if move.shift:
                staged[tmp] = (move.entry, self._shifted(old, tmp, move.shift))
            else:
                self.store.move(old, tmp)
                staged[tmp] = (move.entry, int(move.entry["bytes"]))
        self._rewrite_journal(kept)
        for old, move in moved.items():
            if move.shift:
                self.store.delete(old)
        done: dict[int, dict[str, Any]] = {}
        for tmp, (entry, size) in staged.items():
            self.store.move(tmp, entry["file"])
            entry = {**entry, "bytes": size}
            with self._room(JOURNAL):
                self.store.append(JOURNAL, entry_line(entry), int(entry["part"]))
            done[int(entry["part"])] = entry
        return done

    def _shifted(self, name: str, to: str, shift: int) -> int:
        """Write the part file ``name`` again as ``to`` with ``shift`` added to its ``id`` column, a row
        group at a time (the same groups); its size."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self.store.open_file(name) as f:
            source = pq.ParquetFile(f)
            schema = source.schema_arrow

            def write(out: IO[bytes]) -> None:
                with pq.ParquetWriter(out, schema, **writer_options(schema)) as writer:
                    for group in range(source.num_row_groups):
                        table = source.read_row_group(group)
                        ids = pc.add(table.column("id"), pa.scalar(shift, table.schema.field("id").type))
                        table = table.set_column(table.schema.get_field_index("id"), "id", ids)
                        writer.write_table(table, row_group_size=max(table.num_rows, 1))

            with self._room(to):
                return self.store.write(to, write)

    def read_manifest(self) -> dict[str, Any] | None:
        raw = self.store.read(MANIFEST)
        if raw is None:
            return None
        where = f"{self.where.rstrip('/')}/{MANIFEST}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise OutputError(f"{where} is not valid JSON ({e}); pass --overwrite to start over") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise OutputError(f"{where} was not written by embedrt embed-dataset; choose another folder")
        if data.get("version", 0) > VERSION:
            raise OutputError(f"{where} was written by a newer embedrt (version {data.get('version')}); upgrade embedrt")
        return data

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        data = _json_bytes(manifest)
        with self._room(MANIFEST):
            self.store.write(MANIFEST, lambda f: f.write(data))

    def _finished_parts(self) -> dict[int, dict[str, Any]]:
        """``finished_parts``, with the journal rewritten to them."""
        done = finished_parts(self.store)
        self._rewrite_journal(done)  # the good lines only, so the next append does not land on a torn one
        return done

    def _rewrite_journal(self, done: dict[int, dict[str, Any]]) -> None:
        self.store.rewrite(JOURNAL, {i: entry_line(e) for i, e in done.items()})

    def write_file(self, name: str, write: Callable[[IO[bytes]], Any]) -> int:
        """Write ``name`` whole (``write`` fills it); its size in bytes."""
        self.claim.check()
        with self._room(name):
            return self.store.write(name, write)

    @contextlib.contextmanager
    def _room(self, name: str) -> Iterator[None]:
        """A full disk, a quota or a read-only mount named as such, with what was kept and what to do
        (the temporary file is gone, the journal is whole: the same command continues)."""
        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            raise OutputError(
                f"could not write {name} in {self.where!r}: {e.strerror}; the parts finished so far are kept: "
                "make room (or fix the mount) and run the same command to continue"
            ) from e

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Record a finished part (already written whole) in the journal, durably; refused once this
        run's claim on the folder was lost."""
        self.claim.check()
        entry = {**entry, "finished": round(time.time(), 3)}
        with self._room(JOURNAL):
            self.store.append(JOURNAL, entry_line(entry), int(entry["part"]))
        return entry

    def finish(self, manifest_update: dict[str, Any], bad_rows: list[dict[str, Any]]) -> None:
        self.claim.check()
        if bad_rows:
            data = "".join(entry_line(b) + "\n" for b in bad_rows).encode()
            self.store.write(BAD_ROWS, lambda f: f.write(data))
        else:
            self.store.delete(BAD_ROWS)
        old = self.read_manifest() or {}
        self._write_manifest({**old, **manifest_update, "complete": True})


def finished_parts(store: Any) -> dict[int, dict[str, Any]]:
    """The journal entries of ``store`` (an output folder's storage) whose part file is present
    with the recorded size (the journal is the truth): {part index: entry}."""
    done: dict[int, dict[str, Any]] = {}
    sizes = store.names()
    for line in store.journal(JOURNAL):
        try:
            entry = json.loads(line)
            if sizes.get(entry["file"]) == entry["bytes"]:
                done[int(entry["part"])] = entry
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill
    return done


_LABELS = {
    "bundle": "model bundle",
    "input": "input (none of its finished parts matches this input: another corpus, or a text file edited in its "
             "first part, which moves every later row; with --content-defined-parts from a job's first run on, the "
             "parts after an edit are kept)",
}  # fmt: skip


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first identity field that differs, described for the user (None if the job is the same):
    "bundle" or "input" (see ``_LABELS``), else the option with both values. Options come first: an
    edited input may resume, another option may not."""
    for key in sorted(set(old) | set(new), key=lambda k: (k in _LABELS, k)):
        if key == "on_error" and old.get(key) == "fail":
            continue  # a run that stopped at a bad row wrote no bad rows: any policy may go on from it
        if key == SCHEMA and key not in old:
            continue  # written by an embedrt that did not record it
        if key == SCHEMA and old[key] != new.get(key):
            return _schema_change(old[key], new.get(key) or {})
        if old.get(key) != new.get(key):
            return key if key in _LABELS else f"option {key!r} ({old.get(key)!r} there, {new.get(key)!r} now)"
    return None


def _schema_change(old: dict[str, str], new: dict[str, str]) -> str:
    """How the output's columns would change (a column's type, as the input's values changed type)."""
    changes = [f"{c}: {old.get(c, 'absent')} there, {new.get(c, 'absent')} now" for c in dict.fromkeys([*old, *new])
               if old.get(c) != new.get(c)]  # fmt: skip
    return (f"schema ({'; '.join(changes)}: the input's values of the column changed type, and parts of two schemas "
            "make a dataset no reader takes as one)")


@functools.lru_cache(maxsize=8)
def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet writer options for an output of ``schema``: a dense ``embedding`` column (floats all but
    distinct, or quantized bytes that a dictionary cannot make smaller) without dictionary encoding,
    which pyarrow tries on every column and gives up on after a page, and without min/max statistics,
    which no reader filters vectors by: about half the time of writing a part of all-MiniLM-L6-v2-sized
    vectors (a one-off: 10,000 rows 50.7 -> 23.9 ms). The other columns as pyarrow's defaults. The
    options name a column's Parquet leaves, read from an empty file of the schema."""
    import pyarrow.parquet as pq

    if "embedding" not in schema.names or not pa.types.is_fixed_size_list(schema.field("embedding").type):
        return {}
    empty = io.BytesIO()
    pq.write_table(schema.empty_table(), empty)
    leaves = pq.ParquetFile(io.BytesIO(empty.getvalue())).schema
    others = [p for p in (leaves.column(i).path for i in range(len(leaves))) if p.split(".", 1)[0] != "embedding"]
    return {"use_dictionary": others, "write_statistics": others}

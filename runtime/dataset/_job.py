"""``embed_dataset``: a whole corpus to a Parquet dataset of ids and vectors, streaming and resumable."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from .. import __version__
from .._bundle import MANIFEST_NAME
from .._embedder import Embedder
from .._types import parse
from ._batch import BatchResult, EmbedBatch, OnError
from ._output import OutputFolder
from ._readers import read_part
from ._sources import InputFormat, PartSpec, Plan, plan_input

Log = Callable[[str], None]


class Backend(str, Enum):
    LOCAL = "local"
    RAY = "ray"


@dataclass
class RayOptions:
    """Where and how wide the Ray backend runs (see ``embedrt.dataset._ray``)."""

    address: str | None = None  # None: an existing cluster if RAY_ADDRESS is set, else a local one
    num_actors: int | None = None  # default: the cluster's CPUs, less one, over cpus_per_actor
    cpus_per_actor: int = 1
    num_gpus_per_actor: float = 0.0


@dataclass
class DatasetSummary:
    """What a job did. ``str()`` is the one-line summary the CLI prints."""

    output: str
    rows: int  # input rows
    written: int  # rows in the output (rows less skipped bad rows)
    bad_rows: int
    parts: int
    parts_resumed: int  # finished by an earlier run, kept
    seconds: float
    rows_embedded: int  # by this run
    tokens: int  # by this run
    bad_examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def texts_per_second(self) -> float:
        return self.rows_embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        resumed = f" ({self.parts_resumed} of {self.parts} parts kept from an earlier run)" if self.parts_resumed else ""
        return (
            f"{self.written} rows written to {self.output}{resumed}; bad rows {self.bad_rows}; "
            f"this run: {self.rows_embedded} texts in {self.seconds:.1f} s, "
            f"{self.texts_per_second:.1f} texts/s, {self.tokens_per_second:.0f} tokens/s"
        )


def embed_dataset(
    input: str | Path | list[str | Path],
    output: str | Path,
    model: str | Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    keep_columns: list[str] | tuple[str, ...] = (),
    on_error: str | OnError = OnError.FAIL,
    batch_size: int = 32,
    rows_per_part: int = 10_000,
    normalize: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    backend: str | Backend = Backend.LOCAL,
    ray: RayOptions | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> DatasetSummary:
    """Embed every row of ``input`` into the Parquet dataset folder ``output``.

    ``input``: a ``.txt`` (one text a line), ``.jsonl``, ``.csv``/``.tsv`` or ``.parquet`` file, a
    folder of them, or a glob. Rows are cut into parts of ``rows_per_part``; each part becomes one
    Parquet file (``id``, the ``keep_columns``, ``embedding`` as a fixed-size list of float32),
    written whole. Running the same call again after a crash or a kill continues where it stopped:
    finished parts are kept, and the result equals an uninterrupted run. An ``output`` made from
    another input, model or options is refused unless ``overwrite``.

    ``id_column``: the column whose values name each row (default: the row number across the input's
    files in sorted order, from 0). ``on_error``: ``"fail"`` (stop at the first bad row, naming it),
    ``"skip"`` (leave it out) or ``"null"`` (keep it with a null embedding); bad rows are listed in
    ``output/_bad_rows.jsonl`` and counted in ``output/_manifest.json``.
    """
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    keep = tuple(keep_columns)
    _check_columns(id_column, keep)
    policy = parse(OnError, on_error, "on_error")
    which = parse(Backend, backend, "backend")
    embedder = Embedder(model, device=device, threads=threads) if which is Backend.LOCAL else None
    bundle_hash, dim = _bundle_identity(Path(model))
    plan = plan_input(input, rows_per_part, text_column=text_column, id_column=id_column, keep_columns=keep, log=say)
    schema = output_schema(plan, id_column, keep, dim)
    identity = {
        "bundle": bundle_hash, "input": plan.fingerprint(), "format": plan.format.value, "rows_per_part": rows_per_part,
        "text_column": text_column, "id_column": id_column, "keep_columns": list(keep), "on_error": policy.value,
        "normalize": bool(normalize), "prompt_name": prompt_name, "prompt": prompt,
    }  # fmt: skip
    folder = OutputFolder(output)
    done = folder.open(identity, overwrite)
    todo = [p for p in plan.parts if p.index not in done]
    say(f"{plan.rows} rows in {len(plan.shards)} file(s), {len(plan.parts)} parts of up to {rows_per_part} rows; "
        f"{len(done)} finished by an earlier run, {len(todo)} to do")
    stats = _Stats(done)
    bar = _progress(plan.rows, sum(plan.parts[i].rows for i in done), progress)

    def write(part: PartSpec, result: BatchResult) -> None:
        table = result.table.cast(schema)
        entry = {"part": part.index, "input_rows": part.rows, "rows": table.num_rows, "tokens": result.tokens,
                 "bad": [b.to_dict() for b in result.bad]}  # fmt: skip
        stats.add(folder.write_part(part.name, lambda f: _write_parquet(table, f), entry))
        if bar is not None:
            bar.update(part.rows)
            bar.set_postfix(tokens_per_s=f"{stats.tokens / max(time.perf_counter() - t0, 1e-9):.0f}", refresh=False)

    settings = {"text_column": text_column, "id_column": id_column, "keep_columns": keep, "on_error": policy,
                "batch_size": batch_size, "normalize": normalize, "prompt_name": prompt_name, "prompt": prompt}  # fmt: skip
    try:
        if which is Backend.LOCAL:
            from ._local import run_local

            assert embedder is not None
            batch = EmbedBatch(embedder, **_batch_kwargs(settings))
            run_local(todo, lambda p: read_part(plan, p, text_column, id_column, keep), batch, write)
        else:
            from ._ray import run_ray

            run_ray(plan, todo, Path(model), Path(output), schema, settings, ray or RayOptions(), device,
                    stats.add_ray(folder, bar), say)
    finally:
        if bar is not None:
            bar.close()
    summary = stats.summary(str(output), plan, time.perf_counter() - t0)
    folder.finish(_final_manifest(plan, summary, schema, stats, batch_size), stats.bad_rows())
    return summary


def _check_columns(id_column: str | None, keep: tuple[str, ...]) -> None:
    for c in keep:
        if c in ("id", "embedding"):
            raise ValueError(f"keep_columns may not hold {c!r}: the output has its own {c!r} column")
    if id_column is not None and id_column in keep:
        raise ValueError(f"id_column {id_column!r} is also in keep_columns; it is written as 'id' already")


def _batch_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    from ._readers import TEXT

    return {"text_column": TEXT, "id_column": "id", "on_error": settings["on_error"],
            "batch_size": settings["batch_size"], "normalize": settings["normalize"],
            "prompt_name": settings["prompt_name"], "prompt": settings["prompt"]}  # fmt: skip


def _bundle_identity(bundle: Path) -> tuple[str, int]:
    from .._bundle import load_manifest

    manifest = load_manifest(bundle, verify=False)  # the Embedder verified it (local) or the actors will
    return hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest(), manifest.dimension


def output_schema(plan: Plan, id_column: str | None, keep: tuple[str, ...], dim: int) -> pa.Schema:
    """The output's columns and types, fixed before any row is read."""
    from ._readers import _ARROW

    def column_type(name: str) -> pa.DataType:
        if plan.format is InputFormat.PARQUET:
            import pyarrow.parquet as pq

            return pq.read_schema(plan.shards[0].path).field(name).type
        if plan.format is InputFormat.JSONL:
            return _ARROW[plan.json_types.get(name, "string")]
        return pa.string()  # csv / tsv: text as written

    fields = [pa.field("id", column_type(id_column) if id_column else pa.int64())]
    fields += [pa.field(c, column_type(c)) for c in keep]
    fields.append(pa.field("embedding", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def _write_parquet(table: pa.Table, f: IO[bytes]) -> None:  # (table, file) for functools.partial
    import pyarrow.parquet as pq

    pq.write_table(table, f, row_group_size=max(table.num_rows, 1))


class _Stats:
    def __init__(self, done: dict[int, dict[str, Any]]) -> None:
        self.entries = dict(done)
        self.resumed = len(done)
        self.rows = self.tokens = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.entries[int(entry["part"])] = entry
        self.rows += int(entry["input_rows"])
        self.tokens += int(entry["tokens"])

    def add_ray(self, folder: OutputFolder, bar: Any) -> Callable[[dict[str, Any]], None]:
        def record(entry: dict[str, Any]) -> None:
            self.add(folder.record(entry))
            if bar is not None:
                bar.update(int(entry["input_rows"]))

        return record

    def bad_rows(self) -> list[dict[str, Any]]:
        return [b for i in sorted(self.entries) for b in self.entries[i].get("bad", [])]

    def summary(self, output: str, plan: Plan, seconds: float) -> DatasetSummary:
        bad = self.bad_rows()
        return DatasetSummary(
            output=output, rows=plan.rows, written=sum(int(e["rows"]) for e in self.entries.values()),
            bad_rows=len(bad), parts=len(plan.parts), parts_resumed=self.resumed, seconds=seconds,
            rows_embedded=self.rows, tokens=self.tokens, bad_examples=bad[:20],
        )  # fmt: skip


def _final_manifest(
    plan: Plan, summary: DatasetSummary, schema: pa.Schema, stats: _Stats, batch_size: int
) -> dict[str, Any]:
    bad = stats.bad_rows()
    return {
        "created_by": f"embedrt {__version__}",
        "rows": summary.written,
        "input": {"format": plan.format.value, "rows": plan.rows, "fingerprint": plan.fingerprint(),
                  "files": [{"path": s.path, "rows": s.rows, "sha256": s.sha256} for s in plan.shards]},
        "dimension": schema.field("embedding").type.list_size,
        "schema": {f.name: str(f.type) for f in schema},
        "parts": [{"file": stats.entries[i]["file"], "rows": stats.entries[i]["rows"]} for i in sorted(stats.entries)],
        "bad_rows": {"count": len(bad), "ids": [b.get("id") for b in bad[:1000]],
                     "file": "_bad_rows.jsonl" if bad else None},
        "last_run": {**asdict(summary), "batch_size": batch_size, "bad_examples": None},
    }  # fmt: skip


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="embed-dataset", unit="row", unit_scale=True, smoothing=0.1)

"""The Ray Data backend, and ``embed_ray_dataset`` for pipelines that already hold a Ray dataset.

The job's unit of work stays the part (a fixed row range of one input file): Ray Data hands part
numbers to a pool of actors; each actor builds the model once, reads its part straight from the
input, runs the same batch function as the local backend and writes the part whole into OUTPUT;
the driver appends each finished part to the journal. So the output, its resume and its vectors are
the local backend's, and the pitfalls of a plain read -> map_batches -> write_parquet pipeline do not
arise: no block is one whole Parquet file (parts are row ranges), row order needs no care (each part
is written in input order), nothing is appended to a half-written folder (each part is renamed into
place), and bad rows are handled in the batch function, never by dropping blocks.

On a cluster, INPUT, OUTPUT and the bundle must be paths every node can read (and OUTPUT write):
a shared file system, or ``s3://`` / ``gs://`` URIs (each actor reads its part, writes it and fetches
the bundle itself; see ``_storage``). Every node needs ``embedrt[ray]`` installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .._cache import JOB_CACHE_MB, check_cache_mb
from .._errors import EmbedrtError
from .._load import load_model
from .._preferred import check_device_streams, pin_setting
from .._reranker import Reranker
from .._sparse_encoder import SparseEncoder
from .._types import Device, check_int, parse
from ._batch import (
    BadRow,
    BadRowError,
    EmbedBatch,
    OnError,
    bundle_digest,
    chunker,
    load_embedding_model,
    output_settings,
    sparse_settings,
    text_source,
)
from ._output import OutputFolder
from ._scan_workers import scan_answer
from ._score import SCORE, ScoreBatch, check_job_kind, pair_settings
from ._sources import PartSpec, Plan
from ._storage import absolute

if TYPE_CHECKING:
    from ._job import JobSettings, RayOptions

log = logging.getLogger("embedrt.dataset")
_INSTALL = 'the Ray backend needs Ray Data: pip install "embedrt[ray]"'
_SCANS_AT_ONCE = 128  # the planning scan's tasks in flight at most (a driver thread waits on each)
_POLL_S = 0.5  # how often the driver asks for the rows the actors' model batches have done


def ray_module() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return ray


def _connect(ray: Any, address: str | None, say: Callable[[str], None]) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS, or the one this process already joined: the
    planning scan's, ``ClusterScans``), else start a local one. Returns True when this call started
    Ray (and so should stop it)."""
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress bar and log lines say what it would
    if ray.is_initialized():
        return False
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, include_dashboard=False)
    resources = ray.cluster_resources()
    say(f"Ray: {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs "
        f"({'cluster at ' + address if address else 'local or RAY_ADDRESS'})")
    return True


def _pool(ray: Any, num_actors: int | None, cpus_per_actor: float) -> int:
    """Actors to start: by default the cluster's CPUs less one (left for Ray's own tasks), per actor."""
    if num_actors is not None:
        return _check_actors(num_actors)
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int((cpus - 1) // cpus_per_actor))


def _check_actors(num_actors: int) -> int:
    return check_int(num_actors, "num_actors")


def _check_restarts(max_restarts: int) -> int:
    return check_int(max_restarts, "max_restarts", 0)


def check_options(options: RayOptions) -> None:
    """Raise ``ValueError`` naming the first bad value of ``options``."""
    _check_cpus(options.cpus_per_actor)
    _check_restarts(options.max_restarts)
    if options.num_actors is not None:
        _check_actors(options.num_actors)


class ActorLostError(EmbedrtError, RuntimeError):
    """A Ray actor's process died more often than its restarts allow; the finished parts are kept."""


class PartFailedError(EmbedrtError, ValueError):
    """A part failed on a Ray actor (a file whose columns do not fit, one changed since the plan, a
    full disk): the actor's error, as the local backend would have raised it, and the part."""


def _check_cpus(cpus_per_actor: float) -> int:
    if isinstance(cpus_per_actor, bool) or not isinstance(cpus_per_actor, int | float) or cpus_per_actor <= 0:
        raise ValueError(f"cpus_per_actor must be a positive number, got {cpus_per_actor!r}")
    return max(1, int(cpus_per_actor))  # onnxruntime's intra-op threads (it ignores OMP_NUM_THREADS)


class _RowCounter:
    """A Ray actor: the rows of each part the actors' model batches have done, until the driver takes
    them (its progress bar moves within a part, as the local backend's does)."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}

    def add(self, part: int, rows: int) -> None:
        self.rows[part] = self.rows.get(part, 0) + rows

    def take(self) -> dict[int, int]:
        out, self.rows = self.rows, {}
        return out


class _Reporter:
    """An actor's ``on_rows`` for one part: sends the counter what its batches did at most every
    ``every`` seconds (one call per model batch would cost the actor a remote call each)."""

    def __init__(self, counter: Any, part: int, every: float) -> None:
        self.counter, self.part, self.every = counter, part, every
        self.pending, self.sent = 0, time.monotonic()

    def __call__(self, rows: int) -> None:
        self.pending += rows
        if time.monotonic() - self.sent >= self.every:
            self.counter.add.remote(self.part, self.pending)
            self.pending, self.sent = 0, time.monotonic()


class _PartWorker:
    """One model per actor; ``{"part": [i, ...], "plan": [part i with the plan of its files
    (``Plan.alone``), pickled, ...]} -> {"entry": [journal entry JSON, ...]}``. A part is read,
    embedded and written a slice at a time, as the local backend does."""

    def __init__(self, bundle: str, output: str, schema: pa.Schema, job: JobSettings,
                 model_options: dict[str, Any], threads: int, counter: Any = None,
                 report_s: float = _POLL_S, bundle_hash: str | None = None) -> None:  # fmt: skip
        self.output, self.schema, self.job = OutputFolder(output), schema, job
        self.batch: EmbedBatch | ScoreBatch
        if job.query_column is not None:  # a reranker's pairs
            model: Any = load_model(bundle, threads=threads, **model_options)
            self.batch = ScoreBatch(model, **job.score_kwargs())
        else:
            model = load_embedding_model(bundle, threads=threads, **model_options)
            self.batch = EmbedBatch(model, **job.batch_kwargs())
        self.counter, self.report_s = counter, report_s  # a _RowCounter actor, or None
        found = bundle_digest(model.path)
        self.wrong_bundle = None if bundle_hash in (None, found) else (  # a node's copy, or one re-exported since
            f"the bundle at {bundle!r} on node {socket.gethostname()} is not the one the job was planned with "
            f"(its manifest's sha256 {found[:16]}..., the job's {str(bundle_hash)[:16]}...): every node must read "
            "the same bundle, unchanged while the job runs"
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ._job import write_part

        entries = []
        for index, sent in zip(batch["part"].tolist(), batch["plan"].tolist(), strict=True):
            if self.wrong_bundle is not None:  # its vectors would not be the job's
                entries.append(json.dumps({"part": index, "error": self.wrong_bundle}))
                continue
            plan, part = pickle.loads(sent)
            on_rows = None if self.counter is None else _Reporter(self.counter, index, self.report_s)
            results = (self.batch.run(self.batch.prepare(t), on_rows) for t in self.job.slices(plan, part))
            try:
                entry = write_part(self.output, results, self.schema, plan, part)
            except BadRowError as e:
                entries.append(json.dumps({"part": index, "bad_row": e.row.to_dict() | {"position": e.row.position}},
                                          default=str))  # fmt: skip
                continue
            except (EmbedrtError, ValueError, TypeError, OSError) as e:  # told to the driver, not as a Ray traceback
                entries.append(json.dumps({"part": index, "error": f"{e} ({type(e).__name__})"}))
                continue
            entries.append(json.dumps(entry, default=str))
        return {"entry": np.array(entries, dtype=object)}


def run_ray(
    plan: Plan, todo: list[PartSpec], bundle: str | Path, output: str, schema: pa.Schema, job: JobSettings,
    options: RayOptions, model_options: dict[str, Any], record: Callable[[dict[str, Any]], None],
    say: Callable[[str], None], on_rows: Callable[[PartSpec, int], None] | None = None, bundle_hash: str | None = None,
) -> None:  # fmt: skip
    """Embed the parts ``todo`` on Ray actors, each loading the bundle's model with ``model_options``
    and refusing its parts if that bundle is not ``bundle_hash`` (``bundle_digest``);
    ``record`` each finished part (driver side); ``on_rows(part, n)`` (from another thread of the
    driver) as the actors' model batches finish rows of a part, reported every ``_POLL_S`` seconds."""
    ray = ray_module()
    threads = _check_cpus(options.cpus_per_actor)  # the options were checked by embed_dataset: this converts
    restarts = options.max_restarts
    if not todo:  # a finished job run again: no cluster to start or join (a local Ray takes seconds)
        return
    with _callers_sigterm():
        started = _connect(ray, options.address, say)
    finished: set[int] = set()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        actors = min(_pool(ray, options.num_actors, options.cpus_per_actor), len(todo))
        say(f"Ray: {actors} actor(s) x {options.cpus_per_actor} CPU, {options.num_gpus_per_actor} GPU each")
        counter = None if on_rows is None else ray.remote(num_cpus=0)(_RowCounter).remote()
        items = [{"part": p.index, "plan": pickle.dumps(plan.alone(p))} for p in todo]  # a part's own files each
        ds = ray.data.from_items(items, override_num_blocks=len(todo))
        out = ds.map_batches(
            _PartWorker,
            fn_constructor_kwargs={"bundle": absolute(bundle), "output": output,
                                   "schema": schema, "job": job, "model_options": model_options, "threads": threads,
                                   "counter": counter, "report_s": _POLL_S, "bundle_hash": bundle_hash},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.cpus_per_actor, num_gpus=options.num_gpus_per_actor or None,
            max_restarts=restarts,  # Ray's default (no limit) retries a part that kills its actor forever
        )  # fmt: skip
        try:
            with _polling(ray, counter, plan, on_rows):
                for row in out.iter_rows():
                    entry = json.loads(row["entry"])
                    if "error" in entry:
                        raise PartFailedError(f"part {entry['part']} failed on a Ray actor: {entry['error']}")
                    if "bad_row" in entry:
                        b = entry["bad_row"]
                        position = b.pop("position")
                        raise BadRowError(BadRow(b["id"], b["reason"], b["file"], b.get(position), position))
                    record(entry)
                    finished.add(entry["part"])
        except ray.exceptions.RayActorError as e:
            left = [p.index for p in todo if p.index not in finished]
            raise ActorLostError(
                f"a Ray actor's process died {restarts + 1} time(s), more than max_restarts={restarts} allows, "
                f"with parts {_ranges(left)} of 0-{len(plan.parts) - 1} not done: out of memory (lower --batch-size "
                f"or raise the actors' memory), a crash in the runtime, or a lost node. The {len(finished)} "
                f"part(s) this run finished are kept in {output}: run the same command to resume. "
                f"Ray said: {' '.join(str(e).split())[:800]}"
            ) from e
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _callers_sigterm() -> Iterator[None]:
    """Keep a SIGTERM handler of the caller's own (the CLI's, which stops the job as Ctrl-C does)
    over the one ``ray.init`` installs, which ends the process with status 15 instead."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


class ClusterScans:
    """The planning scan's files read by Ray tasks on the cluster, many at once, for an input of many
    large files (a crawl's thousands of WET files would keep the driver alone scanning for hours):
    ``_sources.scan_content`` in a task of one CPU a file (up to ``_SCANS_AT_ONCE`` at once), the driver keeping the rest (stamps, the
    scan's record). The cluster is joined on the first ``start`` (a run with nothing to scan joins
    none); ``close`` stops a Ray this started."""

    place, objects = "on the Ray cluster", True  # objects too: each task reads its own

    def __init__(self, options: RayOptions, say: Callable[[str], None]) -> None:
        self.options, self.say = options, say
        self.started = False
        self._task: Any = None

    def start(self) -> int:
        ray = ray_module()
        if self._task is None:
            with _callers_sigterm():
                self.started = _connect(ray, self.options.address, self.say)
            self._task = ray.remote(num_cpus=1)(scan_answer)
        return max(1, min(_SCANS_AT_ONCE, int(ray.cluster_resources().get("CPU", 1))))

    def scan(self, path: str, *args: Any) -> Any:
        ray = ray_module()
        found, error = ray.get(self._task.remote((absolute(path), *args)))
        if error is not None:
            raise error  # the task's own error (a file that is not of its kind), as a scan here raises it
        shard, *rest = found
        return (dataclasses.replace(shard, path=path), *rest)

    def close(self) -> None:
        if self.started:
            ray_module().shutdown()
            self.started = False


@contextlib.contextmanager
def _polling(ray: Any, counter: Any, plan: Plan, on_rows: Callable[[PartSpec, int], None] | None) -> Iterator[None]:
    """While the body runs, a driver thread hands ``on_rows`` what ``counter`` gathered, every ``_POLL_S``."""
    if counter is None or on_rows is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(_POLL_S):
            try:
                rows = ray.get(counter.take.remote(), timeout=30)
            except Exception:  # the bar is a view: a lost counter must not fail the job (parts still count)
                log.debug("progress counter not reachable", exc_info=True)
                return
            for part, n in rows.items():
                on_rows(plan.parts[part], n)

    thread = threading.Thread(target=poll, name="embedrt-ray-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def embed_ray_dataset(
    ds: Any,
    model: str | Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    on_error: str | OnError = OnError.FAIL,
    batch_size: int = 32,
    rows_per_batch: int = 4096,
    normalize: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    output_column: str | None = None,
    precision: str = "float32",
    truncate_dim: int | None = None,
    ranges: np.ndarray | None = None,
    num_actors: int = 1,
    cpus_per_actor: int = 1,
    num_gpus_per_actor: float = 0.0,
    device: str = "auto",
    max_restarts: int = 3,
    streams: int | str = "auto",
    chunk_tokens: int | str | None = None,
    chunk_overlap: int = 0,
    chunk_text: bool = False,
    max_active_dims: int | None = None,
    repeat_cache_mb: float = JOB_CACHE_MB,
    text_template: str | None = None,
    query_column: str | None = None,
) -> Any:
    """``ds`` (a ``ray.data.Dataset`` with a ``text_column``) with an ``output_column`` of vectors
    added (default ``embedding``); with a reranker bundle, of each row's score of its
    (``query_column``, text) pair (default ``score``, as ``ScoreBatch`` gives it; the embedding
    options are not for pairs).

    Lazy, as Ray datasets are: nothing runs until you consume or write the result. Each of
    ``num_actors`` actors builds the model once (onnxruntime threads = ``cpus_per_actor``) and embeds
    batches of ``rows_per_batch`` rows, sorted by length inside each batch. Ray does not keep row
    order: carry an id column. Bad rows follow ``on_error`` (``skip`` drops them from the result,
    ``null`` keeps them with a null vector) inside the batch function, so no block is ever dropped
    whole. The bundle must be a path every node can read, or an ``s3://`` / ``gs://`` URI (each
    machine fetches it once into its cache). ``precision``, ``truncate_dim`` and
    ``ranges``: as ``EmbedBatch`` takes them. An actor whose process dies is restarted up to
    ``max_restarts`` times and its batch runs again; past that the dataset fails with Ray's
    ``ActorDiedError`` (Ray's own default, no limit, would retry a batch that kills it forever).
    ``streams``: batches an actor runs at once, each on its share of its threads (``"auto"``: one
    per thread on the CPU provider, as the corpus job does). ``device="auto"`` is resolved here, once
    (the bundle's preferred setting where this machine can run it, else ``cpu``), and every actor
    runs that setting. ``chunk_tokens``, ``chunk_overlap``,
    ``chunk_text``: a row per window of each text instead of truncating it, as ``EmbedBatch`` takes them.
    A sparse (SPLADE) bundle gives a struct of ``indices`` and ``values`` (``max_active_dims``: the
    largest weights kept per vector). ``repeat_cache_mb``: each actor keeps the vectors of the texts
    it embedded last, up to that many megabytes, and does not embed them again (0: none).
    ``text_template``: each row's text made from several columns (``"{title}\n{text}"``), as
    ``EmbedBatch`` takes it.
    """
    ray = ray_module()
    threads = _check_cpus(cpus_per_actor)
    restarts = _check_restarts(max_restarts)
    parse_on_error = parse(OnError, on_error, "on_error")
    _check_actors(num_actors)
    check_cache_mb(repeat_cache_mb, "repeat_cache_mb")
    text_source(text_column, text_template)
    where, _ = check_device_streams(device, streams)
    model, choice = pin_setting(model, where, None)  # "auto" resolved once: every actor runs the same setting
    device = choice.device.value
    checking = load_model(model, device=Device.CPU, verify=True)
    check_job_kind(model, checking.kind, query_column)
    shared: dict[str, Any] = {"model": absolute(model), "text_column": text_column, "text_template": text_template,
              "id_column": id_column, "on_error": parse_on_error, "batch_size": batch_size, "prompt_name": prompt_name,
              "prompt": prompt, "device": device, "threads": threads, "streams": streams}  # fmt: skip
    if choice.precision_hint is not None:  # the bundle's preferred setting (embeddings only)
        shared["precision_hint"] = choice.precision_hint
    batch: type[EmbedBatch] | type[ScoreBatch]
    if isinstance(checking, Reranker):
        assert query_column is not None  # check_job_kind
        pair_settings(normalize, precision, truncate_dim, ranges, chunk_tokens, max_active_dims)
        kwargs: dict[str, Any] = {**shared, "query_column": query_column, "output_column": output_column or SCORE,
                                  "repeat_cache_mb": repeat_cache_mb}  # fmt: skip
        ScoreBatch(checking, **{k: v for k, v in kwargs.items() if k not in ("model", "device", "threads", "streams")})
        batch = ScoreBatch  # a bad column name, prompt or option fails above, not on a worker
    else:
        checking.tokenize([], prompt_name, prompt)  # a bad bundle, prompt or output setting fails here, not on a worker
        sparse = isinstance(checking, SparseEncoder)
        sparse_settings(sparse, normalize, precision, truncate_dim, ranges, max_active_dims)
        output_settings(checking.dimension, precision, truncate_dim, ranges, sparse)
        chunker(checking, chunk_tokens, chunk_overlap, chunk_text, prompt_name, prompt)
        kwargs = {**shared, "normalize": normalize, "output_column": output_column or "embedding",
                  "precision": precision, "truncate_dim": truncate_dim, "ranges": ranges, "chunk_tokens": chunk_tokens,
                  "chunk_overlap": chunk_overlap, "chunk_text": chunk_text, "max_active_dims": max_active_dims,
                  "repeat_cache_mb": repeat_cache_mb}  # fmt: skip
        batch = EmbedBatch
    return ds.map_batches(
        batch, fn_constructor_kwargs=kwargs,
        batch_size=rows_per_batch, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=cpus_per_actor, num_gpus=num_gpus_per_actor or None, max_restarts=restarts,
    )  # fmt: skip

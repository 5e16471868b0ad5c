"""What every bundle kind shares: one loader, one hash check, one session factory, one guarded run.

``BundleModel`` reads and verifies the manifest, loads the tokenizer with the model's truncation,
makes the ONNX Runtime session (``_session.create_session``) and runs it one batch at a time (or
``streams`` batches at a time, each on its share of the threads). The
classes on top (``Embedder``, ``Reranker``, ``SparseEncoder``) name the kinds they serve and add
only what their kind computes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnxruntime as ort

from ._bundle import MODEL_NAME, TOKENIZER_NAME, Manifest, check_graph, load_manifest
from ._errors import BundleError, EmbedrtError, ProviderWarning
from ._int8_cpu import Int8Plan, detect_cpu, plan_int8
from ._objects import local_bundle
from ._preferred import check_device_streams, choose_device
from ._progress import EncodeProgress, batch_tokens
from ._session import (
    available_cpus,
    check_precision_hint,
    create_session,
    provider_available,
    resolve_streams,
    split_threads,
)
from ._tokenize import Tokenized, load_tokenizer, pad_batch, share_batches, token_batches
from ._types import AUTO, MADE_FOR, BundleKind, Device, PaddingSide, Precision, check_int

if TYPE_CHECKING:
    from ._chunking import Chunker, Chunks

# Padded tokens per model run (rows x the batch's longest row), so one long input cannot blow memory:
# a document of several thousand tokens runs alone. On the CPU provider, runs of ~1024 tokens are
# also the fastest: their activations stay in the caches (MiniLM through Embedder.encode, 2 threads,
# AVX2 EPYC, 32 texts in runs of 1024 tokens against one run: fp32 1.13x at 128 tokens, 1.34x at
# 256, 1.29x at 512; int8 1.14x, 1.15x, 1.10x; at 16-64 tokens within the noise;
# benchmarks/results/run-tokens-*.json). A run on one thread (streams of one thread each, or a
# one-thread model) has one core's caches: runs of half as many tokens are its fastest (Zen 5 EPYC,
# 2 streams, runs of 512 tokens against 1024, paired medians of 5 rounds: int8 1.06x sentences,
# 1.08x passages; fp32 1.04x, 0.99x; benchmarks/results/streams-run-tokens-*.json). On OpenVINO, runs
# of 2048 tokens hold 85-211 MB less at their peak than 16384 at the same speed within the rounds'
# noise (AMX Xeon, MiniLM, bf16 on 1 and 2 streams and fp32: 0.95-1.06x best against best;
# benchmarks/results/openvino-run-tokens-*.json). Other devices (a GPU wants big runs) keep 16384.
CPU_RUN_TOKENS = 1024
CPU_THREAD_RUN_TOKENS = 512  # a run on one thread
OPENVINO_RUN_TOKENS = 2048
DEFAULT_MAX_BATCH_TOKENS = 16384


def run_tokens(max_batch_tokens: int | str | None, device: Device, run_threads: int) -> int | None:
    """The token budget per model run: ``max_batch_tokens`` checked, ``"auto"`` resolved for ``device``
    and the threads each run has (``run_threads``)."""
    if max_batch_tokens == AUTO:
        if device is Device.OPENVINO:
            return OPENVINO_RUN_TOKENS
        if device is not Device.CPU:
            return DEFAULT_MAX_BATCH_TOKENS
        return CPU_THREAD_RUN_TOKENS if run_threads == 1 else CPU_RUN_TOKENS
    if max_batch_tokens is None:
        return None
    return check_int(max_batch_tokens, "max_batch_tokens", also=", None or 'auto'")


# onnxruntime's own session fusion of Add + LayerNormalization into SkipLayerNormalization: int8
# sessions keep the two ops, 1.06-1.08x faster on the AVX2 EPYC (best of 3 rounds, sentences and
# passages; fp32 within the noise either way): python -m benchmarks.session_fusions, results in
# benchmarks/results/session-fusions-epyc-avx2-20261130.json.
INT8_UNFUSED = ["SkipLayerNormFusion"]


class BundleModel:
    """A loaded bundle: manifest, tokenizer and session. Subclasses set ``KINDS`` (the kinds they serve).

    Args:
        bundle: folder written by ``embedrt export``.
        device: ``"cpu"``, ``"cuda"`` (needs onnxruntime-gpu and a GPU) or ``"openvino"`` (OpenVINO's own
            runtime on the CPU; needs ``embedrt[openvino]`` and a plain graph, ``export --no-optimize``).
            ``"auto"`` (default): the bundle's preferred setting where this machine can run it (a
            bundle of ``export --precision auto`` that measured OpenVINO's bf16 faster; ``_preferred``),
            else ``"cpu"``. ``device_choice`` says which and why.
        threads: intra-op threads; default: the CPUs this process may use (affinity, cgroup quota).
        verify: check the sha256 of every bundle file against the manifest.
        provider_options: passed to the execution provider; for ``device="openvino"``, properties of
            OpenVINO's CPU plugin (its names, e.g. ``{"NUM_STREAMS": "4"}``), over embedrt's own.
        precision_hint: ``"bf16"`` / ``"fp32"``: the compute precision OpenVINO uses for the graph
            (``device="openvino"`` only; needs ``embedrt[openvino]``). None: fp32 (OpenVINO's own
            default is bf16 on AMX CPUs).
        memory_arena: keep onnxruntime's CPU memory arena. Off by default: it keeps the largest
            batch's memory for good (RSS 1240 vs 508 MB measured); on, long inputs run ~5-18% faster.
        max_batch_tokens: the most padded tokens one model run may hold (rows x longest row), on
            top of ``batch_size``; ``None`` lifts it. Bounds memory on models with long windows.
            ``"auto"``: 1024 on the CPU provider (the fastest there), 512 where each run has one
            thread (streams of one thread, ``threads=1``), 2048 on OpenVINO, 16384 on CUDA.
        streams: batches run at once, each on its share of ``threads`` (``device="cpu"``: one
            onnxruntime session shared by streams of one thread each, else a session per stream;
            ``device="openvino"``: OpenVINO's throughput mode), and ``encode`` keeps each busy with its
            own batch. Pays for a busy server and large ``encode`` calls (corpus jobs); a call of
            fewer batches than streams is cut into a piece per stream (``batches_as_cut`` keeps
            its batches whole), and one row runs on one stream's threads (on ``device="cpu"``,
            ``all_threads`` runs a lone batch on all of them, at the cost of a second copy of the
            weights). At most ``threads``: the model's ``streams`` is the number it
            runs. ``"auto"``: one stream per thread on ``device="cpu"`` and on ``"openvino"`` in
            bf16, one elsewhere (the corpus job's default).
    """

    KINDS: ClassVar[tuple[BundleKind, ...]] = ()

    def __init__(
        self,
        bundle: str | Path,
        device: str | Device = AUTO,
        *,
        threads: int | None = None,
        verify: bool = True,
        provider_options: dict[str, Any] | None = None,
        precision_hint: str | None = None,
        memory_arena: bool = False,
        max_batch_tokens: int | str | None = AUTO,
        streams: int | str = 1,
    ) -> None:
        self.path = local_bundle(bundle)  # an s3:// or gs:// bundle: its copy in the local cache
        asked_device, asked = check_device_streams(device, streams)
        self.threads = available_cpus() if threads is None else check_int(threads, "threads")
        self.manifest: Manifest = load_manifest(self.path, verify=verify)
        choice = choose_device(self.path, self.manifest, asked_device, precision_hint, provider_options, verify)
        self.device, self.device_choice, precision_hint = choice.device, choice.why, choice.precision_hint
        if choice.path != self.path:  # the bundle's preferred setting: a bundle of its own, in a subfolder
            self.path, self.manifest = choice.path, load_manifest(choice.path, verify=verify)
        self.precision_hint = check_precision_hint(self.device, precision_hint)
        self.streams = resolve_streams(self.device, asked, self.threads, self.precision_hint)
        run_threads = max(split_threads(self.threads, self.streams))
        self.max_batch_tokens = run_tokens(max_batch_tokens, self.device, run_threads)
        if self.manifest.kind not in self.KINDS:
            raise BundleError(
                f"bundle {str(self.path)!r} is of kind {self.manifest.kind.value!r}; {type(self).__name__} serves "
                f"kinds {', '.join(repr(k.value) for k in self.KINDS)} ({kind_hint(self.manifest.kind)})"
            )
        self.tokenizer = load_tokenizer(self.path / TOKENIZER_NAME, self.manifest.max_seq_length)
        if self.device is Device.OPENVINO and self.manifest.optimizations.get("optimize") and provider_available(self.device):
            # fused graphs hold onnxruntime contrib ops OpenVINO lacks: the graph would be split
            raise BundleError(
                f"bundle {str(self.path)!r} is fused (onnxruntime contrib operators, which OpenVINO cannot run); "
                "for device 'openvino' export it with --no-optimize (optimize=False)"
            )
        self.int8_plan: Int8Plan | None = self._int8_plan()
        self._new_session = functools.partial(
            create_session, self.path / MODEL_NAME, self.device, self.threads, provider_options,
            precision_hint=precision_hint, memory_arena=memory_arena,
            session_config=self.int8_plan.session_config() if self.int8_plan else None,
            disabled_optimizers=INT8_UNFUSED if self.int8_plan else None,
        )  # fmt: skip
        self.session = self._load(self.streams)
        check_graph(self.path, self.manifest, self.session.get_inputs(), self.session.get_outputs())
        graph_inputs = {i.name for i in self.session.get_inputs()}
        self._with_type_ids = "token_type_ids" in graph_inputs
        self._left = self.manifest.padding_side is PaddingSide.LEFT
        # one run at a time; with streams the session's own pool (sessions, infer requests) bounds them
        self._run_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.streams == 1 else contextlib.nullcontext()
        )
        # CPU streams: in ``all_threads``, a run with nothing beside it takes a session of all the threads
        self._solo: Any = None
        self._solo_lock = threading.Lock()
        self._solo_runs = self.device is Device.CPU and self.streams > 1
        self._call_flags = threading.local()  # per calling thread: all_threads, as_cut
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises with onnxruntime's message; no second copy on stderr
        self._chunkers: dict[tuple[str, str, str | None, str | None], Chunker] = {}
        _warn_if_not_made_for(self.path, self.manifest, self.device)

    def _chunker(self, tokens: object, overlap: object, prompt_name: str | None, prompt: str | None) -> Chunker:
        """The ``Chunker`` of these window settings for this bundle, made once (each holds its own copy
        of the tokenizer, which takes milliseconds to make); a ``ValueError`` for bad settings."""
        from ._chunking import window_chunker  # _chunking imports this module

        key = (repr(tokens), repr(overlap), prompt_name, prompt)
        made = self._chunkers.get(key)
        if made is None:
            made = window_chunker(self.manifest, self.tokenizer, tokens, overlap, prompt_name, prompt)  # type: ignore[arg-type]
            if len(self._chunkers) >= 16:
                self._chunkers.clear()
            self._chunkers[key] = made
        return made

    def _split_windows(self, texts: str | Sequence[str], tokens: object, overlap: object, prompt_name: str | None,
                       prompt: str | None) -> Chunks:  # fmt: skip
        """``texts`` (checked) cut into the windows of these settings (``encode_chunks``)."""
        return self._chunker(tokens, overlap, prompt_name, prompt).split(check_texts([texts] if isinstance(texts, str) else texts))

    def _load(self, streams: int) -> Any:
        """The session (``create_session``) for ``streams``; a ``BundleError`` if the graph cannot load."""
        try:
            return self._new_session(streams=streams)
        except EmbedrtError:
            raise
        except Exception as e:  # onnxruntime's own exception types are not importable in a stable way
            raise BundleError(
                f"{self.path / MODEL_NAME} cannot be loaded by {self._engine} ({e}); export the model again"
            ) from e

    @contextlib.contextmanager
    def all_threads(self) -> Iterator[None]:
        """With CPU streams, a call of one batch started on this thread inside the block runs on all
        the threads at once, in a second session of all of them (made on its first use: a second
        copy of the weights), unless another such run holds it; outside, it runs on one stream's
        threads. For a lone request's latency where requests may also come together (the server
        runs its lone requests so). No effect on one stream, or on OpenVINO's streams."""
        with self._on_this_thread("all_threads"):
            yield

    @contextlib.contextmanager
    def batches_as_cut(self) -> Iterator[None]:
        """Calls started on this thread inside the block run their batches as ``batch_size`` and
        ``max_batch_tokens`` cut them. Outside, with streams, a call of fewer batches than streams is
        cut further, into a piece per stream, so that no stream idles while another runs it all; a
        caller that shares its work between the streams itself (the server's batcher) runs inside."""
        with self._on_this_thread("as_cut"):
            yield

    @contextlib.contextmanager
    def _on_this_thread(self, flag: str) -> Iterator[None]:
        """``flag`` set for the calls this thread starts inside the block (nested blocks restore it)."""
        before = getattr(self._call_flags, flag, False)
        setattr(self._call_flags, flag, True)
        try:
            yield
        finally:
            setattr(self._call_flags, flag, before)

    def _shares_small_calls(self) -> bool:
        """Whether this thread's call cuts a call of fewer batches than streams into a piece per stream:
        with streams, unless in ``batches_as_cut``, or in ``all_threads`` where it takes all the threads."""
        local = self._call_flags
        if self.streams == 1 or getattr(local, "as_cut", False):
            return False
        return not (self._solo_runs and getattr(local, "all_threads", False))

    @property
    def lone_runs_take_all_threads(self) -> bool:
        """Whether ``all_threads`` has an effect: a model with CPU streams."""
        return self._solo_runs

    def _int8_plan(self) -> Int8Plan | None:
        """How an int8 bundle must run on this CPU (``_int8_cpu``); None for other bundles."""
        if self.manifest.precision is not Precision.INT8 or self.device is not Device.CPU:
            return None
        plan = plan_int8(self.manifest.optimizations.get("quantization") or {}, detect_cpu())
        if plan.precise:
            warnings.warn(f"{self.path}: {plan.text}", RuntimeWarning, stacklevel=4)
        return plan

    @property
    def kind(self) -> BundleKind:
        return self.manifest.kind

    @property
    def max_seq_length(self) -> int:
        return self.manifest.max_seq_length

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.manifest.prompts)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def _run(self, outputs: list[str], feed: dict[str, np.ndarray], alone: bool = False) -> list[np.ndarray]:
        """One model run. ``alone`` (the call's only run) inside ``all_threads`` with CPU streams: on all
        the threads at once, in a second session made on first use, unless another lone run holds it."""
        try:
            solo = alone and self._solo_runs and getattr(self._call_flags, "all_threads", False)
            if solo and self._solo_lock.acquire(blocking=False):
                try:
                    if self._solo is None:
                        self._solo = self._load(1)
                    return self._solo.run(outputs, feed, self._run_options)  # type: ignore[no-any-return]
                finally:
                    self._solo_lock.release()
            with self._run_lock:
                return self.session.run(outputs, feed, self._run_options)  # type: ignore[no-any-return]
        except EmbedrtError:
            raise
        except Exception as e:  # onnxruntime's exception types (Fail, InvalidArgument, ...) derive from Exception
            raise BundleError(self._run_failure(feed, e)) from e

    def _run_batches(
        self, outputs: list[str], batches: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """``(rows, outputs)`` for each ``(rows, feed)`` of ``batches``, in their order. With ``streams``
        above 1 the batches run on that many threads at once, at most two per stream queued ahead."""
        rest = iter(batches)
        head = list(itertools.islice(rest, 2 if self.streams > 1 else 0))
        batches = itertools.chain(head, rest)
        if len(head) < 2:  # one stream, or one batch (a server's piece): on this thread, no pool
            for rows, feed in batches:
                yield rows, self._run(outputs, feed, alone=True)
            return
        pending: deque[tuple[np.ndarray, Future[list[np.ndarray]]]] = deque()
        with ThreadPoolExecutor(self.streams, thread_name_prefix="embedrt-stream") as pool:
            try:
                for rows, feed in batches:
                    pending.append((rows, pool.submit(self._run, outputs, feed)))
                    if len(pending) >= 2 * self.streams:
                        done_rows, future = pending.popleft()
                        yield done_rows, future.result()
                while pending:
                    done_rows, future = pending.popleft()
                    yield done_rows, future.result()
            finally:  # a failed batch or an abandoned loop: queued batches do not run
                for _, future in pending:
                    future.cancel()

    def _run_failure(self, feed: dict[str, np.ndarray], error: Exception) -> str:
        """What failed, on which batch, and the likely cause, for an onnxruntime run error."""
        shape = feed["input_ids"].shape
        width = shape[-1]
        m = self.manifest
        detail = " ".join(str(error).split())[:400]
        if "alloc" in detail.lower() or "memory" in detail.lower():
            cause = "out of memory: use a smaller batch_size or shorter inputs"
        elif len(shape) == 2 and width >= m.max_seq_length:
            cause = (f"the batch is as long as manifest.json's max_seq_length ({m.max_seq_length}): the graph "
                     f"may not take inputs this long (was max_seq_length raised by hand?)")
        else:
            cause = (f"the graph does not accept this batch: was manifest.json (max_seq_length "
                     f"{m.max_seq_length}, inputs {m.inputs}) edited, or model.onnx replaced?")
        batch = " x ".join(str(d) for d in shape)
        return (f"{self._engine} failed to run bundle {str(self.path)!r} on a batch of {batch} tokens "
                f"({self.providers[0]}): {cause}. Export the model again if the bundle was changed. "
                f"{self._engine} said: {detail}")

    @property
    def _engine(self) -> str:
        return "OpenVINO" if self.device is Device.OPENVINO else "onnxruntime"

    def _batches(
        self, tok: Tokenized, batch_size: int, show_progress_bar: bool = False, desc: str = "encode"
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """``(rows, feed)`` per batch, longest first, each padded only to its own longest row, of at
        most ``batch_size`` rows and ``max_batch_tokens`` padded tokens; with streams, at least a
        batch per stream where the rows allow (``batches_as_cut``).

        Longest first: padding only to each batch's longest input, and the biggest memory need up front.
        """
        check_batch_size(batch_size)
        order = np.argsort(-tok.lengths, kind="stable")
        lengths = tok.lengths[order]
        pieces = token_batches(lengths, batch_size, self.max_batch_tokens)
        if self._shares_small_calls():
            pieces = share_batches(lengths, pieces, self.streams)
        padded = sum(batch_tokens(lengths, pieces))  # the bar counts padded tokens: an honest ETA
        bar = EncodeProgress(padded, len(tok), show_progress_bar, desc)
        try:
            for piece in pieces:
                rows = order[piece]
                feed = pad_batch(tok, rows, self.manifest.pad_token_id, self._with_type_ids, self._left)
                yield rows, feed
                bar.update(len(rows), feed["input_ids"].size)
        finally:
            bar.close()

    def _prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        """The prompt text to prepend: ``prompt``, the one named, or the bundle's default prompt."""
        return prompt_text(self.manifest, prompt_name, prompt)

    def _with_prompt(self, texts: list[str], prompt_name: str | None, prompt: str | None) -> list[str]:
        text = self._prompt(prompt_name, prompt)
        return [text + t for t in texts] if text else texts


# encode_document's prompt: the first of these the bundle has (sentence-transformers' documented order)
DOCUMENT_PROMPTS = ("document", "passage", "corpus")
QUERY_PROMPTS = ("query",)


def prompt_text(m: Manifest, prompt_name: str | None, prompt: str | None) -> str | None:
    """The prompt to put before each text: ``prompt``, the one named, or the bundle's default prompt."""
    if prompt_name is not None and prompt is not None:
        raise ValueError("give prompt_name or prompt, not both")
    if prompt_name is not None:
        if prompt_name not in m.prompts:
            raise ValueError(f"prompt_name {prompt_name!r} is not in this bundle's prompts {sorted(m.prompts)}")
        prompt = m.prompts[prompt_name]
    elif prompt is None and m.default_prompt_name:
        prompt = m.prompts.get(m.default_prompt_name)
    if prompt is not None and not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    return prompt or None


def task_prompt(prompts: dict[str, str], names: tuple[str, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the first of ``names`` found in ``prompts`` as the prompt, unless one is given.

    No such prompt means an empty one, which also keeps the bundle's default prompt from applying, as
    sentence-transformers' encode_query / encode_document do (their "query" and "document" prompts
    exist, empty, unless the model sets them).
    """
    if kwargs.get("prompt_name") is not None or kwargs.get("prompt") is not None:
        return kwargs
    name = next((n for n in names if n in prompts), None)
    return {**kwargs, "prompt": prompts[name] if name else ""}


def kind_hint(kind: BundleKind) -> str:
    """Which class serves ``kind``, for error messages."""
    return {
        BundleKind.EMBEDDING: "load it with embedrt.Embedder",
        BundleKind.STATIC: "load it with embedrt.Embedder",
        BundleKind.RERANKER: "load it with embedrt.Reranker",
        BundleKind.SPARSE: "load it with embedrt.SparseEncoder",
    }[kind]


def check_batch_size(batch_size: object) -> None:
    check_int(batch_size, "batch_size")


def check_texts(texts: object, what: str = "texts") -> list[str]:
    """``texts`` as a list of str; a ``TypeError`` naming the first item that is not one.

    Any ordered column of strings is taken: a list or tuple, a NumPy array, a pandas or polars
    Series, a pyarrow array. Sets, mappings and iterators are refused (no order, or no length)."""
    if (
        isinstance(texts, str | bytes | Set | Mapping)
        or not isinstance(texts, Iterable)
        or not hasattr(texts, "__len__")
    ):
        raise TypeError(
            f"{what} must be a str or a sequence of str (a list, tuple, NumPy array or pandas Series), "
            f"got {type(texts).__name__}"
        )
    to_list = getattr(texts, "to_pylist", None)  # pyarrow: iterating gives scalars, not str
    out = list(to_list() if callable(to_list) else texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}: {t!r:.80}")
    return out


def _warn_if_not_made_for(bundle: Path, m: Manifest, device: Device) -> None:
    made_for = MADE_FOR.get(m.precision, tuple(Device))
    if device in made_for:
        return
    fits = " or ".join(p.value for p, devices in MADE_FOR.items() if device in devices)
    warnings.warn(
        f"bundle {str(bundle)!r} is {m.precision.value}, made for the {'/'.join(d.value for d in made_for)} "
        f"provider, and runs here on {device.value}: expect it to be slow (`embedrt info` shows on which "
        f"provider its quality numbers were measured); for {device.value}, export a {fits} bundle",
        ProviderWarning,
        stacklevel=4,
    )

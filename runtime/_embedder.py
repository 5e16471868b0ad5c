"""``Embedder``: encode texts with a bundle, the way sentence-transformers users know."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import MODEL_NAME, TOKENIZER_NAME, Manifest, load_manifest
from ._errors import BundleError, EmbedrtError
from ._int8_cpu import Int8Plan, detect_cpu, plan_int8
from ._session import available_cpus, check_precision_hint, create_session
from ._tokenize import Tokenized, flat_batches, flat_ids, load_tokenizer, pad_batch, token_batches, tokenize
from ._types import BundleKind, Device, OutputValue, PaddingSide, Precision, parse

_KINDS = (BundleKind.EMBEDDING, BundleKind.STATIC)
# Padded tokens per model run (rows x the batch's longest row). 32 texts of 512 tokens fit; a
# document of several thousand tokens runs with few others, so one long input cannot blow memory.
DEFAULT_MAX_BATCH_TOKENS = 16384
# Tokens per run of a static bundle: its graph sums with a [texts, tokens] membership matrix, whose
# cost grows with both; 1024 measured fastest (2000 sentences: 0.35 s at 1024, 1.8 s at 16384).
STATIC_RUN_TOKENS = 1024


class Embedder:
    """Sentence embeddings from an embedrt bundle, through ONNX Runtime, without PyTorch.

    Args:
        bundle: folder written by ``embedrt export``.
        device: ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu and a GPU).
        threads: intra-op threads; default: the CPUs this process may use (affinity, cgroup quota).
        verify: check the sha256 of every bundle file against the manifest.
        provider_options: passed to the execution provider.
        precision_hint: ``"bf16"`` / ``"fp32"``: the compute precision OpenVINO uses for the graph
            (``device="openvino"`` only; needs ``embedrt[openvino]``).
        memory_arena: keep onnxruntime's CPU memory arena. Off by default: it keeps the largest
            batch's memory for good (RSS 1240 vs 508 MB measured); on, long inputs run ~5-18% faster.
        max_batch_tokens: the most padded tokens one model run may hold (rows x longest row), on
            top of ``batch_size``; ``None`` lifts it. Bounds memory on models with long windows.

    ``encode`` may be called from several threads at once: tokenization runs in parallel, and the
    model runs one batch at a time on its own thread pool, so threads are never oversubscribed.
    """

    def __init__(
        self,
        bundle: str | Path,
        device: str | Device = "cpu",
        *,
        threads: int | None = None,
        verify: bool = True,
        provider_options: dict[str, Any] | None = None,
        precision_hint: str | None = None,
        memory_arena: bool = False,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        self.path = Path(bundle)
        if max_batch_tokens is not None and (
            isinstance(max_batch_tokens, bool) or not isinstance(max_batch_tokens, int) or max_batch_tokens < 1
        ):
            raise ValueError(f"max_batch_tokens must be a positive integer or None, got {max_batch_tokens!r}")
        self.max_batch_tokens = max_batch_tokens
        self.device = parse(Device, device, "device")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.threads = threads or available_cpus()
        self.manifest: Manifest = load_manifest(self.path, verify=verify)
        if self.manifest.kind not in _KINDS:
            raise BundleError(
                f"bundle {str(self.path)!r} is a {self.manifest.kind.value} bundle; Embedder serves "
                f"{', '.join(k.value for k in _KINDS)} bundles"
            )
        self.tokenizer = load_tokenizer(self.path / TOKENIZER_NAME, self.manifest.max_seq_length)
        self.precision_hint = check_precision_hint(self.device, precision_hint)
        self.int8_plan: Int8Plan | None = self._int8_plan()
        try:
            self.session = create_session(
                self.path / MODEL_NAME, self.device, self.threads, provider_options, precision_hint=precision_hint,
                memory_arena=memory_arena, session_config=self.int8_plan.session_config() if self.int8_plan else None,
            )
        except EmbedrtError:
            raise
        except Exception as e:  # onnxruntime's own exception types are not importable in a stable way
            raise BundleError(
                f"{self.path / MODEL_NAME} cannot be loaded by onnxruntime ({e}); export the model again"
            ) from e
        graph_inputs = {i.name for i in self.session.get_inputs()}
        self._with_type_ids = "token_type_ids" in graph_inputs
        self._left = self.manifest.padding_side is PaddingSide.LEFT
        self._static = self.manifest.kind is BundleKind.STATIC
        self._run_lock = threading.Lock()

    def _int8_plan(self) -> Int8Plan | None:
        """How an int8 bundle must run on this CPU (``_int8_cpu``); None for other bundles."""
        if self.manifest.precision is not Precision.INT8 or self.device is not Device.CPU:
            return None
        plan = plan_int8(self.manifest.optimizations.get("quantization") or {}, detect_cpu())
        if plan.precise:
            warnings.warn(f"{self.path}: {plan.text}", RuntimeWarning, stacklevel=3)
        return plan

    # -- properties in sentence-transformers' shape ------------------------------------------------

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    def get_sentence_embedding_dimension(self) -> int:
        return self.manifest.dimension

    @property
    def max_seq_length(self) -> int:
        return self.manifest.max_seq_length

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.manifest.prompts)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Embedder({str(self.path)!r}, architecture={m.source.get('architecture')!r}, dim={m.dimension}, "
            f"pooling={[p.value for p in m.pooling]}, precision={m.precision.value!r}, "
            f"providers={self.providers}, threads={self.threads})"
        )

    # -- encoding ------------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], prompt_name: str | None = None, prompt: str | None = None) -> Tokenized:
        """Token ids of ``texts`` (prompt prepended), truncated to ``max_seq_length``, unpadded."""
        return tokenize(self.tokenizer, self._prepare(texts, prompt_name, prompt))

    def _prepare(self, texts: Sequence[str], prompt_name: str | None, prompt: str | None) -> list[str]:
        out = self._with_prompt(_check_texts(texts), prompt_name, prompt)
        limit = self.manifest.max_chars
        return [t[:limit] for t in out] if limit is not None else out

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        output_value: str = "sentence_embedding",
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed ``texts``.

        Returns float32: a ``str`` gives shape ``(dim,)``, a list gives ``(n, dim)`` in the caller's order.
        With ``output_value="token_embeddings"``: one ``(tokens, hidden)`` array per text, without padding.
        ``normalize=True`` L2-normalizes on top of what the model does; ``None``/``False`` leave the
        model's output as it is (a model with a Normalize module is always normalized, as in
        sentence-transformers). ``prompt_name`` picks a prompt from the manifest; ``prompt`` gives one.
        """
        single = isinstance(texts, str)
        batch: Sequence[str] = [texts] if single else texts  # type: ignore[list-item]
        if self._static and parse(OutputValue, output_value, "output_value") is OutputValue.SENTENCE_EMBEDDING:
            _check_batch_size(batch_size)
            flat, lengths = flat_ids(self.tokenizer, self._prepare(batch, prompt_name, prompt))
            out: np.ndarray | list[np.ndarray] = self._encode_flat(flat, lengths, batch_size, normalize, show_progress_bar)
        else:
            tok = self.tokenize(batch, prompt_name, prompt)
            out = self.encode_tokenized(tok, batch_size, normalize, output_value, show_progress_bar)
        return out[0] if single else out

    def encode_tokenized(
        self,
        tok: Tokenized,
        batch_size: int = 32,
        normalize: bool | None = None,
        output_value: str = "sentence_embedding",
        show_progress_bar: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed already tokenized texts (see ``tokenize``)."""
        _check_batch_size(batch_size)
        what = parse(OutputValue, output_value, "output_value")
        if self._static:
            if what is not OutputValue.SENTENCE_EMBEDDING:
                raise ValueError("a static-embedding bundle gives sentence_embedding only (its graph has no token states)")
            flat = np.fromiter((t for ids in tok.ids for t in ids), dtype=np.int64, count=int(tok.lengths.sum()))
            return self._encode_flat(flat, tok.lengths, batch_size, normalize, show_progress_bar)
        n = len(tok)
        sentences = np.empty((n, self.dimension), dtype=np.float32)
        tokens: list[np.ndarray] = [np.empty((0, self.manifest.hidden_size), np.float32)] * n
        # Longest first: padding only to each batch's longest input, and the biggest memory need up front.
        order = np.argsort(-tok.lengths, kind="stable")
        bar = _progress(n, show_progress_bar)
        for piece in token_batches(tok.lengths[order], batch_size, self.max_batch_tokens):
            rows = order[piece]
            feed = pad_batch(tok, rows, self.manifest.pad_token_id, self._with_type_ids, self._left)
            if what is OutputValue.SENTENCE_EMBEDDING:
                (sentences[rows],) = self._run(["sentence_embedding"], feed)
            else:
                (hidden,) = self._run(["token_embeddings"], feed)
                width = hidden.shape[1]
                for r, i in enumerate(rows):
                    n_i = int(tok.lengths[i])
                    tokens[i] = (hidden[r, width - n_i :] if self._left else hidden[r, :n_i]).copy()
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        if what is OutputValue.TOKEN_EMBEDDINGS:
            return tokens
        return _normalized(sentences) if normalize else sentences

    def _encode_flat(
        self, flat: np.ndarray, lengths: np.ndarray, batch_size: int, normalize: bool | None, show_progress_bar: bool
    ) -> np.ndarray:
        """Static bundles: each batch is a slice of the flat token array plus its offsets, in the
        caller's order (no sort, no padding)."""
        sentences = np.empty((len(lengths), self.dimension), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        bar = _progress(len(lengths), show_progress_bar)
        budget = min(self.max_batch_tokens or STATIC_RUN_TOKENS, STATIC_RUN_TOKENS)
        for piece in flat_batches(lengths, batch_size, budget):
            first = starts[piece.start]
            feed = {"input_ids": flat[first : starts[piece.stop]], "offsets": starts[piece] - first}
            (sentences[piece],) = self._run(["sentence_embedding"], feed)
            if bar is not None:
                bar.update(piece.stop - piece.start)
        if bar is not None:
            bar.close()
        return _normalized(sentences) if normalize else sentences

    def _run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._run_lock:
            return self.session.run(outputs, feed)  # type: ignore[no-any-return]

    def _with_prompt(self, texts: list[str], prompt_name: str | None, prompt: str | None) -> list[str]:
        if prompt_name is not None and prompt is not None:
            raise ValueError("give prompt_name or prompt, not both")
        if prompt_name is not None:
            if prompt_name not in self.manifest.prompts:
                raise ValueError(
                    f"prompt_name {prompt_name!r} is not in this bundle's prompts {sorted(self.manifest.prompts)}"
                )
            prompt = self.manifest.prompts[prompt_name]
        elif prompt is None and self.manifest.default_prompt_name:
            prompt = self.manifest.prompts.get(self.manifest.default_prompt_name)
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        return [prompt + t for t in texts] if prompt else texts


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _normalized(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence | np.ndarray):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}: {t!r:.80}")
    return out


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode", unit="text")

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
from ._tokenize import Tokenized, load_tokenizer, pad_batch, tokenize
from ._types import BundleKind, Device, OutputValue, Precision, parse

_KINDS = (BundleKind.EMBEDDING, BundleKind.STATIC)


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
    ) -> None:
        self.path = Path(bundle)
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
        return tokenize(self.tokenizer, self._with_prompt(_check_texts(texts), prompt_name, prompt))

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
        tok = self.tokenize([texts] if single else texts, prompt_name, prompt)  # type: ignore[list-item]
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        what = parse(OutputValue, output_value, "output_value")
        n = len(tok)
        sentences = np.empty((n, self.dimension), dtype=np.float32)
        tokens: list[np.ndarray] = [np.empty((0, self.manifest.hidden_size), np.float32)] * n
        # Longest first: padding only to each batch's longest input, and the biggest memory need up front.
        order = np.argsort(-tok.lengths, kind="stable")
        bar = _progress(n, show_progress_bar)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            feed = pad_batch(tok, rows, self.manifest.pad_token_id, self._with_type_ids)
            if what is OutputValue.SENTENCE_EMBEDDING:
                (sentences[rows],) = self._run(["sentence_embedding"], feed)
            else:
                (hidden,) = self._run(["token_embeddings"], feed)
                for r, i in enumerate(rows):
                    tokens[i] = hidden[r, : tok.lengths[i]].copy()
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        if what is OutputValue.TOKEN_EMBEDDINGS:
            return tokens
        if normalize:
            norms = np.linalg.norm(sentences, axis=1, keepdims=True)
            sentences /= np.maximum(norms, 1e-12)
        return sentences

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

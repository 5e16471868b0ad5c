"""``Embedder``: encode texts with a bundle, the way sentence-transformers users know."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ._bundle import MODEL_NAME, TOKENIZER_NAME, Manifest, check_graph, load_manifest
from ._errors import BundleError, EmbedrtError, ProviderWarning
from ._progress import EncodeProgress, batch_tokens
from ._session import available_cpus, check_precision_hint, create_session
from ._tokenize import Tokenized, load_tokenizer, pad_batch, tokenize
from ._types import MADE_FOR, BundleKind, Device, OutputValue, parse

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
        try:
            self.session = create_session(
                self.path / MODEL_NAME, self.device, self.threads, provider_options, precision_hint=precision_hint,
                memory_arena=memory_arena,
            )
        except EmbedrtError:
            raise
        except Exception as e:  # onnxruntime's own exception types are not importable in a stable way
            raise BundleError(
                f"{self.path / MODEL_NAME} cannot be loaded by onnxruntime ({e}); export the model again"
            ) from e
        check_graph(self.path, self.manifest, self.session.get_inputs(), self.session.get_outputs())
        graph_inputs = {i.name for i in self.session.get_inputs()}
        self._with_type_ids = "token_type_ids" in graph_inputs
        self._run_lock = threading.Lock()
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises with onnxruntime's message; no second copy on stderr
        _warn_if_not_made_for(self.path, self.manifest, self.device)

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
        bar = EncodeProgress(int(batch_tokens(tok.lengths[order], batch_size).sum()), n, show_progress_bar)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            feed = pad_batch(tok, rows, self.manifest.pad_token_id, self._with_type_ids)
            if what is OutputValue.SENTENCE_EMBEDDING:
                (sentences[rows],) = self._run(["sentence_embedding"], feed)
            else:
                (hidden,) = self._run(["token_embeddings"], feed)
                for r, i in enumerate(rows):
                    tokens[i] = hidden[r, : tok.lengths[i]].copy()
            bar.update(len(rows), feed["input_ids"].size)
        bar.close()
        if what is OutputValue.TOKEN_EMBEDDINGS:
            return tokens
        if normalize:
            norms = np.linalg.norm(sentences, axis=1, keepdims=True)
            sentences /= np.maximum(norms, 1e-12)
        return sentences

    def _run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            with self._run_lock:
                return self.session.run(outputs, feed, self._run_options)  # type: ignore[no-any-return]
        except Exception as e:  # onnxruntime's exception types (Fail, InvalidArgument, ...) derive from Exception
            raise BundleError(self._run_failure(feed, e)) from e

    def _run_failure(self, feed: dict[str, np.ndarray], error: Exception) -> str:
        """What failed, on which batch, and the likely cause, for an onnxruntime run error."""
        rows, width = feed["input_ids"].shape
        m = self.manifest
        detail = " ".join(str(error).split())[:400]
        if "alloc" in detail.lower() or "memory" in detail.lower():
            cause = "out of memory: use a smaller batch_size or shorter inputs"
        elif width >= m.max_seq_length:
            cause = (f"the batch is as long as manifest.json's max_seq_length ({m.max_seq_length}): the graph "
                     f"may not take inputs this long (was max_seq_length raised by hand?)")
        else:
            cause = (f"the graph does not accept this batch: was manifest.json (max_seq_length "
                     f"{m.max_seq_length}, inputs {m.inputs}) edited, or model.onnx replaced?")
        return (f"onnxruntime failed to run bundle {str(self.path)!r} on a batch of {rows} x {width} tokens "
                f"({self.providers[0]}): {cause}. Export the model again if the bundle was changed. "
                f"onnxruntime said: {detail}")

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
        stacklevel=3,
    )

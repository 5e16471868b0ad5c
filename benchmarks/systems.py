"""The systems the suite compares, each a small runner with the same two calls.

Every runner is loaded in its own worker process (``benchmarks.worker``), in whatever virtual
environment holds its library, so this module imports nothing heavy at module level: each
``load`` imports its own library. A runner's ``encode(texts, batch_size)`` returns L2-normalized
float32 sentence embeddings in the caller's order, tokenization included, as a user would call it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class Runner:
    """One system. ``load`` builds it; ``encode`` embeds; ``set_max_length`` changes truncation."""

    def __init__(self, model_dir: str, threads: int, **params: Any) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.params = params
        self.info: dict[str, Any] = {}  # versions, providers, ... reported with the results

    def load(self) -> None:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def set_max_length(self, n: int) -> None:
        raise NotImplementedError


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- PyTorch: sentence-transformers and plain transformers ---------------------------------------


class SentenceTransformersRunner(Runner):
    """sentence-transformers on PyTorch; ``dtype="bf16"`` casts the model (AMX on Sapphire Rapids)."""

    def load(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        self.torch = torch
        self.model = SentenceTransformer(str(self.model_dir), device="cpu")
        if self.params.get("dtype") == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.info = {"torch": torch.__version__, "sentence-transformers": _version("sentence-transformers")}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True)
        return _normalize(out.float().numpy())

    def set_max_length(self, n: int) -> None:
        self.model.max_seq_length = n


class TransformersRunner(Runner):
    """Plain transformers + mean pooling in PyTorch, as the model card shows it: batches in the
    caller's order (no length sort), each padded to its longest text."""

    def load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(self.threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = AutoModel.from_pretrained(str(self.model_dir)).eval()
        self.max_length = 256
        self.info = {"torch": torch.__version__, "transformers": _version("transformers")}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.concatenate(out)

    def set_max_length(self, n: int) -> None:
        self.max_length = n


# -- embedrt ---------------------------------------------------------------------------------------


class EmbedrtRunner(Runner):
    """An embedrt bundle through ``embedrt.Embedder`` (params: ``bundle``, ``device``, ``provider_options``,
    ``precision_hint``, ``streams``)."""

    def load(self) -> None:
        import embedrt

        kw: dict[str, Any] = {"threads": self.threads}
        if self.params.get("provider_options"):
            kw["provider_options"] = self.params["provider_options"]
        if self.params.get("precision_hint"):
            kw["precision_hint"] = self.params["precision_hint"]
        if self.params.get("streams"):
            kw["streams"] = self.params["streams"]
        self.model = embedrt.Embedder(self.params["bundle"], self.params.get("device", "cpu"), **kw)
        m = self.model.manifest
        self.info = {
            "embedrt": embedrt.__version__,
            "onnxruntime": embedrt.onnxruntime_build(),
            "providers": self.model.providers,
            "precision": m.precision.value,
            "optimizations": m.optimizations,
        }

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return _normalize(self.model.encode(list(texts), batch_size=batch_size))

    def set_max_length(self, n: int) -> None:
        self.model.tokenizer.enable_truncation(max_length=n)


# -- peers that run an encoder-only graph, pooling in numpy ----------------------------------------


class _SortedEncoder(Runner):
    """Shared by the OpenVINO and CTranslate2 runners: tokenize in one call, sort by length, pad each
    batch to its longest, mean-pool and normalize in numpy, restore the caller's order (what
    sentence-transformers and embedrt do, so the comparison is of the engines)."""

    def _load_tokenizer(self) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # all-MiniLM-L6-v2's tokenizer.json pads to 128 otherwise
        self.set_max_length(256)

    def set_max_length(self, n: int) -> None:
        self.tokenizer.enable_truncation(max_length=n)

    def _batches(self, texts: Sequence[str], batch_size: int) -> Any:
        enc = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in enc])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = enc[i].ids
            mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64)
            yield rows, ids, mask

    def _encode_with(
        self, texts: Sequence[str], batch_size: int, run: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        out = np.empty((len(texts), 384), dtype=np.float32)
        for rows, ids, mask in self._batches(texts, batch_size):
            hidden = run(ids, mask)
            m = mask[:, :, None].astype(np.float32)
            out[rows] = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return _normalize(out)


class OpenVINORunner(_SortedEncoder):
    """OpenVINO runtime on the encoder ONNX; params: ``precision`` (f32/bf16), ``hint`` (LATENCY/THROUGHPUT).

    In THROUGHPUT mode batches go through an ``AsyncInferQueue`` with as many requests as OpenVINO
    asks for, so its streams overlap."""

    def load(self) -> None:
        import openvino as ov

        self._load_tokenizer()
        core = ov.Core()
        hint = self.params.get("hint", "LATENCY")
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": self.params.get("precision", "f32"),
            "PERFORMANCE_HINT": hint,
        }
        self.compiled = core.compile_model(str(self.params["onnx"]), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.tput = hint == "THROUGHPUT"
        if self.tput:
            n = self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            self.queue = ov.AsyncInferQueue(self.compiled, n)
        self.info = {
            "openvino": ov.__version__,
            "hint": hint,
            "precision": self.params.get("precision", "f32"),
            "streams": str(self.compiled.get_property("NUM_STREAMS")),
        }

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        res = self.request.infer(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        return np.asarray(res[0])

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        if not self.tput:
            return self._encode_with(texts, batch_size, self._run)
        out = np.empty((len(texts), 384), dtype=np.float32)

        def done(request: Any, userdata: Any) -> None:
            rows, mask = userdata
            hidden = request.get_output_tensor(0).data
            m = mask[:, :, None].astype(np.float32)
            out[rows] = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)

        self.queue.set_callback(done)
        for rows, ids, mask in self._batches(texts, batch_size):
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            self.queue.start_async(feed, (rows, mask))
        self.queue.wait_all()
        return _normalize(out)


class OrtGraphRunner(_SortedEncoder):
    """An embedrt bundle's graph in an onnxruntime session made here, for a provider that
    ``embedrt.Embedder`` does not offer yet (params: ``onnx``, ``provider``, ``provider_options``).
    Same batching as embedrt: one tokenize call, length-sorted batches padded to their longest."""

    def load(self) -> None:
        import onnxruntime as ort

        self._load_tokenizer()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        provider = self.params["provider"]
        self.session = ort.InferenceSession(
            str(self.params["onnx"]), so, providers=[(provider, self.params.get("provider_options", {}))]
        )
        if self.session.get_providers()[0] != provider:
            raise RuntimeError(f"{provider} requested, session uses {self.session.get_providers()}")
        self.with_types = "token_type_ids" in {i.name for i in self.session.get_inputs()}
        self.info = {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = np.empty((len(texts), 384), dtype=np.float32)
        for rows, ids, mask in self._batches(texts, batch_size):
            feed = {"input_ids": ids, "attention_mask": mask}
            if self.with_types:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[rows] = self.session.run(["sentence_embedding"], feed)[0]
        return _normalize(out)


class CTranslate2Runner(_SortedEncoder):
    """CTranslate2 ``Encoder`` on a converted model (params: ``ct2_dir``, ``compute_type``)."""

    def load(self) -> None:
        import ctranslate2

        self._load_tokenizer()
        self.ct2 = ctranslate2
        compute = self.params.get("compute_type", "int8")
        self.encoder = ctranslate2.Encoder(
            str(self.params["ct2_dir"]), device="cpu", compute_type=compute, intra_threads=self.threads
        )
        self.info = {"ctranslate2": ctranslate2.__version__, "compute_type": compute}

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        lengths = mask.sum(1)
        tokens = [row[:n].tolist() for row, n in zip(ids, lengths, strict=True)]
        out = self.encoder.forward_batch(tokens)
        return np.asarray(out.last_hidden_state, dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return self._encode_with(texts, batch_size, self._run)


class FastembedRunner(Runner):
    """fastembed ``TextEmbedding`` on local ONNX files (``specific_model_path``); ``sort=True`` sorts
    the texts by length before the call (fastembed itself batches in the caller's order)."""

    NAME = "embedrt-bench/all-MiniLM-L6-v2"

    def load(self) -> None:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        with contextlib.suppress(ValueError):  # already registered in this process
            TextEmbedding.add_custom_model(
                model=self.NAME,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"),  # never fetched
                dim=384,
                model_file="model.onnx",
            )
        self.model = TextEmbedding(
            self.NAME, specific_model_path=str(self.params["fastembed_dir"]), threads=self.threads
        )
        self.set_max_length(256)  # fastembed truncates at model_max_length (512) unless told
        self.info = {
            "fastembed": _version("fastembed"),
            "onnxruntime": _version("onnxruntime"),
            "sorted": self.params.get("sort", False),
        }

    def set_max_length(self, n: int) -> None:
        self.model.model.tokenizer.enable_truncation(max_length=n)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        texts = list(texts)
        if not self.params.get("sort"):
            return _normalize(np.stack(list(self.model.embed(texts, batch_size=batch_size))))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        emb = np.stack(list(self.model.embed([texts[i] for i in order], batch_size=batch_size)))
        out = np.empty_like(emb)
        out[order] = emb
        return _normalize(out)


RUNNERS: dict[str, type[Runner]] = {
    "sentence-transformers": SentenceTransformersRunner,
    "transformers": TransformersRunner,
    "embedrt": EmbedrtRunner,
    "openvino": OpenVINORunner,
    "ctranslate2": CTranslate2Runner,
    "ort-graph": OrtGraphRunner,
    "fastembed": FastembedRunner,
}


def make_runner(spec: dict[str, Any]) -> Runner:
    return RUNNERS[spec["runner"]](spec["model_dir"], spec["threads"], **spec.get("params", {}))


def describe(spec: dict[str, Any]) -> str:
    return json.dumps({k: spec[k] for k in ("name", "runner", "params") if k in spec}) + f" pid={os.getpid()}"

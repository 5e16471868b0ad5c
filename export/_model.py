"""The PyTorch module that becomes the ONNX graph: encoder, pooling, Dense layers and Normalize.

Pooling follows sentence-transformers' ``Pooling._forward_padded`` mode by mode, written to trace
cleanly: no in-place writes into inputs, masks as float, the dtype's own finite minimum (never -inf
or -1e9) for max pooling, reductions accumulated in float32.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embedrt._errors import UnsupportedModelError
from embedrt._types import Pooling

from ._archs import spec_for
from ._source import DenseLayer, SourceSpec

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leakyrelu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


def pool(mode: Pooling, hidden: Tensor, mask: Tensor) -> Tensor:
    """Pool ``hidden`` [batch, seq, dim] under ``mask`` [batch, seq] (1 = token) as sentence-transformers does."""
    acc = torch.float32
    h = hidden.to(acc)
    m = mask.to(acc).unsqueeze(-1)  # [b, s, 1]
    if mode is Pooling.CLS:
        first = mask.to(acc).argmax(dim=1)  # first real token (left padding safe)
        # select(1, 0), not squeeze(1): torch.onnx writes a squeeze of a dim it cannot prove is 1 as an
        # If subgraph, which the fp16 converter leaves half-converted (the graph then fails to load).
        return torch.gather(h, 1, first.view(-1, 1, 1).expand(-1, 1, h.shape[-1])).select(1, 0)
    if mode is Pooling.MAX:
        floor = torch.finfo(h.dtype).min
        return torch.where(m > 0, h, torch.full_like(h, floor)).amax(dim=1)
    if mode in (Pooling.MEAN, Pooling.MEAN_SQRT_LEN):
        total = (h * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1e-9)
        return total / (count if mode is Pooling.MEAN else torch.sqrt(count))
    if mode is Pooling.WEIGHTED_MEAN:
        seq = h.shape[1]
        positions = torch.arange(1, seq + 1, dtype=acc, device=h.device).view(1, -1, 1)
        pad_left = mask.to(acc).argmax(dim=1).to(acc).view(-1, 1, 1)
        weights = m * (positions - pad_left)
        return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if mode is Pooling.LAST_TOKEN:
        seq = h.shape[1]
        values, from_end = mask.to(acc).flip(1).max(dim=1)
        from_end = torch.where(values == 0, torch.full_like(from_end, seq - 1), from_end)
        last = (seq - 1) - from_end
        picked = torch.gather(h * m, 1, last.view(-1, 1, 1).expand(-1, 1, h.shape[-1]))
        return picked.select(1, 0)
    raise ValueError(f"unknown pooling mode {mode!r}")  # pragma: no cover


class DenseBlock(nn.Module):
    """sentence-transformers' Dense: activation(linear(x)) [+ residual]."""

    def __init__(self, spec: DenseLayer) -> None:
        super().__init__()
        self.linear = nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
        self.activation = _ACTIVATIONS[spec.activation]()
        self.residual: nn.Module | None = None
        self.use_residual = spec.residual
        if spec.residual and spec.in_features != spec.out_features:
            self.residual = nn.Linear(spec.in_features, spec.out_features, bias=False)
        state = load_weights(spec.path)
        missing = self.load_state_dict(state, strict=False).missing_keys
        if missing:
            raise UnsupportedModelError(f"{spec.path}: Dense weights lack {missing}")

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (x if self.residual is None else self.residual(x))
        return out


def load_weights(folder: Path) -> dict[str, Tensor]:
    """A module's weights from safetensors, or from a torch file loaded with ``weights_only``."""
    st = folder / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st))
    pt = folder / "pytorch_model.bin"
    if pt.is_file():
        return torch.load(str(pt), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    raise UnsupportedModelError(f"{folder} has neither model.safetensors nor pytorch_model.bin")


class EmbeddingModel(nn.Module):
    """Encoder + pooling + Dense + Normalize, returning (sentence_embedding, token_embeddings)."""

    def __init__(self, encoder: nn.Module, spec: SourceSpec, with_type_ids: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.modes = list(spec.pooling)
        self.dense = nn.ModuleList(DenseBlock(d) for d in spec.dense)
        self.normalize = spec.normalize
        self.with_type_ids = with_type_ids

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_type_ids and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.encoder(**kwargs)
        hidden = out.last_hidden_state
        pooled = torch.cat(
            [out.pooler_output.to(torch.float32) if m is Pooling.POOLER else pool(m, hidden, attention_mask)
             for m in self.modes],
            dim=-1,
        )
        for block in self.dense:
            pooled = block(pooled)
        if self.normalize:
            pooled = F.normalize(pooled, p=2.0, dim=1)
        return pooled, hidden.to(torch.float32)


def load_encoder(spec: SourceSpec) -> nn.Module:
    """The transformers encoder of ``spec``, fp32, eval mode, eager attention (traces into plain ops).

    Encoder-decoder checkpoints load their encoder alone (``ArchSpec.encoder_class``), as
    sentence-transformers does; code shipped in the folder runs only with ``spec.trust_remote_code``.
    """
    import transformers

    arch = spec_for(spec.model_type)
    loader: Any = getattr(transformers, arch.encoder_class) if arch.encoder_class else transformers.AutoModel
    kwargs: dict[str, Any] = {"attn_implementation": "eager", "dtype": torch.float32}
    if spec.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if "use_cache" in spec.config:
        kwargs["use_cache"] = False  # decoders: no key/value cache outputs in the graph
    try:
        model, info = loader.from_pretrained(str(spec.transformer_path), output_loading_info=True, **kwargs)
    except (ValueError, KeyError, OSError, ImportError, AttributeError) as e:
        raise UnsupportedModelError(
            f"architecture {spec.model_type!r} at {spec.transformer_path} cannot be loaded by "
            f"transformers.{getattr(loader, '__name__', loader)}: {type(e).__name__}: {str(e)[:500]}"
        ) from e
    if Pooling.POOLER in spec.pooling:
        _check_pooler(model, info, spec.model_type)
    return model.eval()


def _check_pooler(model: nn.Module, info: dict[str, Any], model_type: str) -> None:
    """``pooler`` pooling needs a pooler that the checkpoint trained (not one transformers made up)."""
    if getattr(model, "pooler", None) is None:
        raise UnsupportedModelError(
            f"--pooling pooler: architecture {model_type!r} ({type(model).__name__}) has no pooler layer "
            f"(no pooler_output); use --pooling cls for the first token's hidden state, or mean"
        )
    missing = [k for k in info.get("missing_keys", []) if "pooler" in k]
    if missing:
        raise UnsupportedModelError(
            f"--pooling pooler: the checkpoint has no trained pooler weights ({sorted(missing)[:4]}); "
            "transformers would initialize them at random. Use --pooling cls or mean"
        )


def load_reference(spec: SourceSpec, log: Callable[[str], None] | None = None) -> tuple[EmbeddingModel, Any]:
    """The PyTorch model of ``spec`` (eval mode) and the transformers tokenizer that feeds it."""
    import time

    from ._tokenizer import load_hf_tokenizer

    say = log or (lambda _m: None)
    size = sum(f.stat().st_size for f in spec.transformer_path.glob("*.safetensors")) or sum(
        f.stat().st_size for f in spec.transformer_path.glob("*.bin")
    )
    say(f"loading the PyTorch model ({size / 1e6:.1f} MB of weights)")
    t0 = time.perf_counter()
    encoder = load_encoder(spec)
    say(f"loaded {type(encoder).__name__} in {time.perf_counter() - t0:.1f} s")
    if Pooling.CLS in spec.pooling and spec.kind == "transformers" and getattr(encoder, "pooler", None) is not None:
        say("note: cls pooling is the first token's last hidden state, as sentence-transformers' cls pooling; "
            f"it is not {type(encoder).__name__}'s pooler_output (dense + tanh over that state). "
            "For pooler_output, export with --pooling pooler")
    hf_tok = load_hf_tokenizer(spec)
    with_type_ids = accepts_type_ids(encoder, list(hf_tok.model_input_names))
    return EmbeddingModel(encoder, spec, with_type_ids).eval(), hf_tok


def accepts_type_ids(encoder: nn.Module, tokenizer_input_names: list[str]) -> bool:
    """Feed token_type_ids only where both the tokenizer produces them and the model takes them."""
    params = inspect.signature(encoder.forward).parameters
    return "token_type_ids" in tokenizer_input_names and "token_type_ids" in params

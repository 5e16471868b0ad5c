"""Tiny random models of today's embedding families, saved by sentence-transformers the way their
real checkpoints are set up (pooling, Dense, Normalize, prompts, padding side); tokenizers trained here.

``make_family(name, folder)`` returns a sentence-transformers folder. Each family copies the recipe of
a real model: Qwen3-Embedding (decoder, last-token pooling, left padding, an instruction prompt),
EmbeddingGemma (bidirectional Gemma3, mean pooling, two Dense layers, prompts by task), sentence-t5
(T5 encoder, mean, Dense, Normalize), ModernBERT (long window with local attention), DeBERTa-v2,
CamemBERT, ALBERT. ``make_remote_code`` writes a model whose modeling code lives in its own folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tiny_models import CORPUS, kept
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_DECODER = {**_TINY, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 512}

QWEN_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
GEMMA_PROMPTS = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "Classification": "task: classification | query: ",
}


@dataclass(frozen=True)
class Family:
    name: str
    config: str  # transformers config class
    config_kw: dict[str, Any]
    tokenizer: str  # "wordpiece" | "bpe" | "unigram"
    template: tuple[str | None, str | None]  # tokens put before / after the text (None: nothing)
    specials: dict[str, str]
    pooling: tuple[str, ...] = ("mean",)
    dense: tuple[tuple[int, bool], ...] = ()  # (out_features, bias), identity activation
    normalize: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    padding_side: str = "right"
    max_seq_length: int = 48
    type_ids: bool = False
    lowercase: bool = False


def _special(**names: str) -> dict[str, str]:
    return names


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("modernbert", "ModernBertConfig",
               {**_TINY, "max_position_embeddings": 512, "local_attention": 8, "global_attn_every_n_layers": 2},
               "bpe", ("[CLS]", "[SEP]"), _special(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]"),
               max_seq_length=256),
        Family("qwen3", "Qwen3Config", _DECODER, "bpe", (None, "<|endoftext|>"),
               _special(pad="<|endoftext|>", eos="<|endoftext|>"), pooling=("lasttoken",),
               prompts={"query": QWEN_PROMPT, "document": ""}, padding_side="left"),
        Family("qwen2", "Qwen2Config", _DECODER, "bpe", (None, "<|endoftext|>"),
               _special(pad="<|endoftext|>", eos="<|endoftext|>"), pooling=("lasttoken",),
               prompts={"query": QWEN_PROMPT}, padding_side="left"),
        Family("mistral", "MistralConfig", _DECODER, "bpe", ("<s>", "</s>"),
               _special(bos="<s>", eos="</s>", pad="</s>", unk="<unk>"), pooling=("lasttoken",),
               prompts={"query": "Instruct: Retrieve semantically similar text.\nQuery: "}, padding_side="left"),
        Family("llama", "LlamaConfig", _DECODER, "bpe", ("<s>", "</s>"),
               _special(bos="<s>", eos="</s>", pad="</s>", unk="<unk>"), pooling=("lasttoken",), padding_side="left"),
        Family("gemma3_text", "Gemma3TextConfig",
               {**_DECODER, "use_bidirectional_attention": True, "sliding_window": 8,
                "layer_types": ["sliding_attention", "full_attention"], "query_pre_attn_scalar": 16},
               "bpe", ("<bos>", "<eos>"), _special(bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>"),
               dense=((64, False), (32, False)), prompts=GEMMA_PROMPTS),
        Family("t5", "T5Config",
               {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2, "pad_token_id": 0,
                "eos_token_id": 1, "decoder_start_token_id": 0},
               "unigram", (None, "</s>"), _special(pad="<pad>", eos="</s>", unk="<unk>"), dense=((32, False),)),
        Family("deberta-v2", "DebertaV2Config",
               {**_TINY, "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 16,
                "pos_att_type": ["p2c", "c2p"], "position_biased_input": False, "type_vocab_size": 0},
               "unigram", ("[CLS]", "[SEP]"), _special(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]"),
               type_ids=True),
        Family("camembert", "CamembertConfig",
               {**_TINY, "max_position_embeddings": 130, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
               "unigram", ("<s>", "</s>"), _special(cls="<s>", pad="<pad>", sep="</s>", unk="<unk>", mask="<mask>")),
        Family("albert", "AlbertConfig", {**_TINY, "embedding_size": 16, "max_position_embeddings": 128},
               "unigram", ("[CLS]", "[SEP]"), _special(pad="<pad>", unk="<unk>", cls="[CLS]", sep="[SEP]", mask="[MASK]"),
               pooling=("cls", "mean"), type_ids=True, lowercase=True),
    ]
}  # fmt: skip


def train_tokenizer(kind: str, specials: dict[str, str], template: tuple[str | None, str | None],
                    lowercase: bool = False, vocab: int = 400) -> Tokenizer:
    """A ``kind`` tokenizer trained on ``CORPUS`` as the family's, kept after its first training (``kept``)."""
    recipe = f"family-{kind} {json.dumps([specials, template, lowercase, vocab])}"
    return kept(recipe, lambda: _trained(kind, specials, template, lowercase, vocab))


def _trained(kind: str, specials: dict[str, str], template: tuple[str | None, str | None], lowercase: bool,
             vocab: int) -> Tokenizer:
    names = list(dict.fromkeys(specials.values()))
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer: Any = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=names)
        tok.decoder = decoders.WordPiece()
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=names,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=names, unk_token=specials.get("unk"))
    tok.train_from_iterator(CORPUS, trainer)
    before, after = template
    parts = [p for p in (before, "$A", after) if p]
    pair = [p for p in (before, "$A", after, "$B:1", f"{after}:1" if after else None) if p]
    if before or after:
        tok.post_processor = processors.TemplateProcessing(
            single=" ".join(parts), pair=" ".join(pair),
            special_tokens=[(t, tok.token_to_id(t)) for t in dict.fromkeys(p for p in template if p)],
        )
    return tok


def make_encoder(family: Family, folder: Path, seed: int = 0) -> Path:
    """The random backbone of ``family`` and its fast tokenizer, saved as a Hugging Face folder."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    tok = train_tokenizer(family.tokenizer, family.specials, family.template, family.lowercase)
    ids = {f"{k}_token_id": tok.token_to_id(v) for k, v in family.specials.items() if k in ("pad", "bos", "eos")}
    kw = {**ids, **family.config_kw} if family.name != "t5" else dict(family.config_kw)
    config = getattr(transformers, family.config)(vocab_size=tok.get_vocab_size(), **kw)
    torch.manual_seed(seed)
    if family.name == "t5":
        model: Any = transformers.T5Model(config)  # saved whole, as the sentence-t5 checkpoints are
    else:
        model = transformers.AutoModel.from_config(config)
    _randomize_norms(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    input_names = ["input_ids", "token_type_ids", "attention_mask"] if family.type_ids else ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_input_names=input_names, model_max_length=family.max_seq_length,
        padding_side=family.padding_side, **{f"{k}_token": v for k, v in family.specials.items()},
    )
    fast.save_pretrained(folder)
    return folder


def _randomize_norms(model: torch.nn.Module) -> None:
    """Norm weights of 1 and biases of 0 hide mistakes in how they are applied: make them random."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))


def make_family(name: str | Family, folder: Path, **changes: Any) -> Path:
    """A sentence-transformers folder for the tiny ``name`` family, or for a ``Family`` given whole
    (``changes`` override its fields)."""
    from dataclasses import replace

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    family = replace(FAMILIES[name] if isinstance(name, str) else name, **changes)
    enc = make_encoder(family, folder / "_backbone")
    transformer = Transformer(str(enc), max_seq_length=family.max_seq_length)
    dim = transformer.get_embedding_dimension()
    mode = family.pooling if len(family.pooling) > 1 else family.pooling[0]
    modules: list[torch.nn.Module] = [transformer, Pooling(dim, pooling_mode=mode)]
    width = dim * len(family.pooling)
    torch.manual_seed(1)
    for out, bias in family.dense:
        modules.append(Dense(width, out, bias=bias, activation_function=torch.nn.Identity()))
        width = out
    if family.normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=family.prompts)
    target = folder / "st"
    model.save(str(target))
    return target


# -- a model whose code ships in its folder (trust_remote_code) --------------------------------------

_REMOTE_CONFIG = '''
from transformers import BertConfig


class TinyRemoteConfig(BertConfig):
    model_type = "tiny_remote_bert"
'''

_REMOTE_MODEL = '''
import torch
from transformers import BertModel

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteModel(BertModel):
    """BERT whose output is scaled by a learned gate: code that only this folder knows."""

    config_class = TinyRemoteConfig

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.gate = torch.nn.Parameter(torch.full((config.hidden_size,), 0.5))

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state * torch.sigmoid(self.gate)
        return out
'''


def make_remote_code(folder: Path) -> Path:
    """A sentence-transformers folder whose backbone class is defined by Python files in the folder."""
    from sentence_transformers import SentenceTransformer
    from tiny_models import make_encoder as make_bert

    backbone = make_bert("bert", folder / "_backbone")
    (backbone / "configuration_tiny_remote.py").write_text(_REMOTE_CONFIG)
    (backbone / "modeling_tiny_remote.py").write_text(_REMOTE_MODEL)
    cfg = json.loads((backbone / "config.json").read_text())
    cfg.update(model_type="tiny_remote_bert", architectures=["TinyRemoteModel"], auto_map={
        "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
        "AutoModel": "modeling_tiny_remote.TinyRemoteModel",
    })
    (backbone / "config.json").write_text(json.dumps(cfg))
    model = SentenceTransformer(str(backbone), device="cpu", trust_remote_code=True)
    # the backbone's checkpoint has no gate, and transformers leaves a parameter it cannot initialize
    # as whatever memory it got (NaN on some machines): give it values, saved with the folder
    with torch.no_grad():
        model[0].auto_model.gate.copy_(torch.linspace(-1.0, 1.0, cfg["hidden_size"]))
    model.max_seq_length = 48
    target = folder / "st"
    model.save(str(target))
    return target


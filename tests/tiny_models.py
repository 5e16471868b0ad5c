"""Tiny random models of several architectures, with tokenizers trained here (and kept, ``kept``);
nothing downloads.

``make_encoder(arch, folder)`` writes a plain Hugging Face encoder folder; ``make_st_folder`` wraps
one into a sentence-transformers folder, saved either by the installed sentence-transformers (new
layout) or written by hand the way sentence-transformers 2.x did (old layout: boolean pooling
flags, ``sentence_transformers.models.*`` types, ``pytorch_model.bin`` Dense weights, and
``max_seq_length`` only as ``model_max_length`` in tokenizer_config.json).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# The tokenizers' training text (and the tests' text to cut): Python 3.11's docstrings of a few
# builtins and modules, then some Korean, Japanese, Chinese, Cyrillic, Arabic, French and emoji;
# kept as a file so that no Python version changes it.
CORPUS = (Path(__file__).parent / "data" / "tiny_corpus.txt").read_text(encoding="utf-8").splitlines()


@dataclass(frozen=True)
class Arch:
    name: str
    config: Callable[[int], object]  # vocab size -> transformers config
    tokenizer: str  # "wordpiece" | "bpe" | "unigram"
    type_ids: bool


def _cfg(cls_name: str, **kw: object) -> Callable[[int], object]:
    def build(vocab: int) -> object:
        import transformers

        cls = getattr(transformers, cls_name)
        return cls(vocab_size=vocab, **kw)

    return build


_SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("bert", _cfg("BertConfig", max_position_embeddings=128, **_SMALL), "wordpiece", True),
        Arch("roberta", _cfg("RobertaConfig", max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                             eos_token_id=2, **_SMALL), "bpe", False),
        Arch("xlm-roberta", _cfg("XLMRobertaConfig", max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                                 eos_token_id=2, **_SMALL), "unigram", False),
        Arch("distilbert", _cfg("DistilBertConfig", dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                max_position_embeddings=128), "wordpiece", False),
        Arch("mpnet", _cfg("MPNetConfig", max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, **_SMALL), "mpnet", False),
        Arch("electra", _cfg("ElectraConfig", embedding_size=32, max_position_embeddings=128, **_SMALL),
             "wordpiece", True),
        Arch("modernbert", _cfg("ModernBertConfig", max_position_embeddings=128, pad_token_id=1, bos_token_id=0,
                                eos_token_id=2, cls_token_id=0, sep_token_id=2, local_attention=16, **_SMALL),
             "bpe", False),
    ]
}


KEPT = Path(__file__).parent / "data" / "tokenizers"


def kept(recipe: str, train: Callable[[], Tokenizer]) -> Tokenizer:
    """The tokenizer ``train()`` made when it was first trained on ``CORPUS``, from ``tests/data/tokenizers``.

    tokenizers' WordPiece and Unigram trainers break ties in hash order, so two trainings on one
    corpus differ (a few tokens, a third of the ids); a random model fed other ids gives other numbers, and a
    test on fine numbers (int8 errors) moves from run to run. Every run reads the kept file instead.
    Its name holds a digest of ``recipe`` (every setting the training takes) and of ``CORPUS``: where
    no file matches, the tokenizer is trained anew, and written there when ``EMBEDRT_KEEP_TOKENIZERS=1``
    (the way to refresh them after changing a recipe or the corpus).
    """
    digest = hashlib.blake2b("\0".join([recipe, *CORPUS]).encode(), digest_size=8).hexdigest()
    path = KEPT / f"{recipe.split(' ', 1)[0]}-{digest}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tok = train()
    if os.environ.get("EMBEDRT_KEEP_TOKENIZERS") == "1":
        KEPT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tok.to_str(pretty=True), encoding="utf-8")
        tmp.replace(path)
    return tok


def _train_tokenizer(kind: str) -> tuple[Tokenizer, dict[str, str]]:
    specials = _specials(kind)
    return kept(f"{kind} {json.dumps(specials)}", lambda: _trained(kind, specials)), specials


def _specials(kind: str) -> dict[str, str]:
    if kind == "wordpiece":
        return {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    if kind == "mpnet":
        return {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "[UNK]", "mask": "<mask>"}
    return {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}


def _trained(kind: str, specials: dict[str, str]) -> Tokenizer:
    if kind in ("wordpiece", "mpnet"):
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=list(specials.values()))
        tok.decoder = decoders.WordPiece()
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials.values()),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=list(specials.values()), unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = specials["cls"], specials["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return tok


def make_encoder(arch: str, folder: Path, seed: int = 0, head: str | None = None, num_labels: int = 1) -> Path:
    """A random tiny ``arch`` encoder with its trained fast tokenizer, saved in ``folder``.

    ``head``: ``"classification"`` (``*ForSequenceClassification`` with ``num_labels``) or ``"mlm"``
    (``*ForMaskedLM``); default the bare encoder.
    """
    import transformers
    from transformers import PreTrainedTokenizerFast

    spec = ARCHS[arch]
    tok, specials = _train_tokenizer(spec.tokenizer)
    torch.manual_seed(seed)
    config = spec.config(tok.get_vocab_size())
    auto = {None: "AutoModel", "classification": "AutoModelForSequenceClassification", "mlm": "AutoModelForMaskedLM"}
    if head == "classification":
        config.num_labels = num_labels  # type: ignore[attr-defined]
    if head is not None:  # wider random weights: scores that differ by more than float noise
        config.initializer_range = 0.3  # type: ignore[attr-defined]
    model = getattr(transformers, auto[head]).from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    names = ["input_ids", "token_type_ids", "attention_mask"] if spec.type_ids else ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_input_names=names, model_max_length=128,
        **{f"{k}_token": v for k, v in specials.items()},
    )
    fast.save_pretrained(folder)
    return folder


def make_st_folder(
    arch: str,
    folder: Path,
    pooling: tuple[str, ...] = ("mean",),
    dense: list[tuple[int, str]] | None = None,
    normalize: bool = True,
    max_seq_length: int = 48,
    layout: str = "new",
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    similarity_fn_name: str | None = None,
) -> Path:
    """A sentence-transformers folder around a tiny ``arch`` encoder. ``dense``: (out_features, activation)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    enc = make_encoder(arch, folder / "_encoder")
    transformer = Transformer(str(enc), max_seq_length=max_seq_length)
    dim = transformer.get_embedding_dimension()
    modules: list[torch.nn.Module] = [transformer, Pooling(dim, pooling_mode=pooling if len(pooling) > 1 else pooling[0])]
    width = dim * len(pooling)
    torch.manual_seed(1)
    for out, act in dense or []:
        modules.append(Dense(width, out, activation_function=getattr(torch.nn, act)()))
        width = out
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(
        modules=modules, device="cpu", prompts=prompts or {}, default_prompt_name=default_prompt_name,
        similarity_fn_name=similarity_fn_name,
    )
    target = folder / "st"
    model.save(str(target))
    if layout == "old":
        _to_old_layout(target, pooling, max_seq_length)
    return target


def _to_old_layout(root: Path, pooling: tuple[str, ...], max_seq_length: int) -> None:
    """Rewrite a freshly saved folder the way sentence-transformers 2.x saved it."""
    legacy = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
              "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
              "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    modules = json.loads((root / "modules.json").read_text())
    for m in modules:
        kind = m["type"].rsplit(".", 1)[-1]
        m["type"] = f"sentence_transformers.models.{kind}"
        path = root / m["path"]
        if kind == "Pooling":
            cfg = json.loads((path / "config.json").read_text())
            old = {"word_embedding_dimension": cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))}
            old.update({flag: mode in pooling for mode, flag in legacy.items()})
            (path / "config.json").write_text(json.dumps(old))
        elif kind == "Dense":
            from safetensors.torch import load_file

            st = path / "model.safetensors"
            torch.save(load_file(str(st)), path / "pytorch_model.bin")
            st.unlink()
        elif kind == "Transformer":
            (path / "sentence_bert_config.json").write_text(json.dumps({"do_lower_case": False}))
            tc = path / "tokenizer_config.json"
            cfg = json.loads(tc.read_text())
            cfg["model_max_length"] = max_seq_length
            tc.write_text(json.dumps(cfg))
    (root / "modules.json").write_text(json.dumps(modules, indent=2))


def make_cross_encoder(
    arch: str, folder: Path, num_labels: int = 1, max_length: int = 40, activation: str | None = None,
    layout: str = "new",
) -> Path:
    """A CrossEncoder folder around a tiny random ``arch`` sequence classifier.

    ``layout="new"``: saved by the installed sentence-transformers (modules.json, activation in
    config_sentence_transformers.json); ``"plain"``: a Hugging Face folder as sentence-transformers
    < 4 left it (activation as ``sbert_ce_default_activation_function`` in config.json).
    ``activation``: a torch.nn class name, e.g. ``"Tanh"``; default: the CrossEncoder's own.
    """
    from sentence_transformers import CrossEncoder

    enc = make_encoder(arch, folder / "_classifier", head="classification", num_labels=num_labels)
    target = folder / "ce"
    act = getattr(torch.nn, activation)() if activation else None
    model = CrossEncoder(str(enc), max_length=max_length, activation_fn=act, device="cpu")
    if layout == "plain":
        model.model.config.sbert_ce_default_activation_function = (
            f"torch.nn.modules.{'linear' if activation == 'Identity' else 'activation'}.{activation}" if activation else None
        )
        model.model.save_pretrained(target)
        model.tokenizer.save_pretrained(target)
        return target
    model.save(str(target))
    return target


def make_sparse_encoder(
    arch: str, folder: Path, pooling: str = "max", activation: str = "relu", max_seq_length: int = 48,
    prompts: dict[str, str] | None = None,
) -> Path:
    """A SPLADE SparseEncoder folder (MLM Transformer + SpladePooling) around a tiny random ``arch``."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    enc = make_encoder(arch, folder / "_mlm", head="mlm")
    transformer = Transformer(str(enc), transformer_task="fill-mask", max_seq_length=max_seq_length)
    splade = SpladePooling(pooling_strategy=pooling, activation_function=activation)
    model = SparseEncoder(modules=[transformer, splade], device="cpu", prompts=prompts or {})
    target = folder / "sparse"
    model.save(str(target))
    return target

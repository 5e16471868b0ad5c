"""The names embedrt exports are the ones we mean to export."""

import embedrt


def test_exported_names() -> None:
    assert set(embedrt.__all__) == {
        "SCHEMA_VERSION", "BundleError", "BundleKind", "Device", "Embedder", "EmbedrtError", "ExportError", "Manifest",
        "ParityError", "Pooling", "Precision", "ProviderError", "ProviderWarning", "Tokenized", "UnsupportedModelError",
        "__version__", "available_cpus", "load_manifest", "onnxruntime_build",
        "EmbeddingPrecision", "SimilarityFunction", "quantization_ranges", "quantize_embeddings",
        "Reranker", "SparseEncoder", "SparseEmbeddings", "SparseVector", "load_model", "EmbeddedChunks",
    }
    for name in embedrt.__all__:
        assert hasattr(embedrt, name), name


def test_error_tree() -> None:
    for cls in (embedrt.BundleError, embedrt.ProviderError, embedrt.ExportError):
        assert issubclass(cls, embedrt.EmbedrtError)
    assert issubclass(embedrt.ParityError, embedrt.ExportError)
    assert issubclass(embedrt.UnsupportedModelError, embedrt.ExportError)


def test_provider_warning_is_a_user_warning() -> None:
    assert issubclass(embedrt.ProviderWarning, UserWarning)

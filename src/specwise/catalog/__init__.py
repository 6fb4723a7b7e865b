"""The catalog: model architectures, GPUs and local Hugging Face model directories (data, no I/O beyond
reading the files named)."""

from specwise.catalog.architecture import Architecture, Precision
from specwise.catalog.gpu import GPU
from specwise.catalog.huggingface import architecture_from_config, read_hf_model, tokenizer_fingerprint
from specwise.catalog.lookup import builtin_gpus, builtin_models, custom_gpu, resolve_gpu, resolve_model

__all__ = ["GPU", "Architecture", "Precision", "architecture_from_config", "builtin_gpus", "builtin_models",
           "custom_gpu", "read_hf_model", "resolve_gpu", "resolve_model", "tokenizer_fingerprint"]

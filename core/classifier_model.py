"""A sequence classifier: a transformer encoder, mean pooling, dropout and a linear head.

Mean pooling rather than the [CLS] pooler because the packaged encoders are
sentence-transformers models trained with mean pooling: their mean-pooled vector is already
a good sentence representation (a logistic regression on it is a strong baseline), so the
head starts from a meaningful feature and fine-tuning only has to adapt it.

On disk (inside a model artifact): ``encoder/`` (``save_pretrained``: safetensors + config),
the tokenizer beside it, ``head.safetensors`` and ``classifier.json`` (labels, pooling,
max length, temperature).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

HEAD_FILE = "head.safetensors"
CONFIG_FILE = "classifier.json"
ENCODER_DIR = "encoder"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, dim) and (batch, tokens) -> (batch, dim): the mean over real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-6)


class PooledClassifier(nn.Module):
    """Encoder + mean pooling + dropout + linear head over ``len(labels)`` classes."""

    def __init__(self, encoder: nn.Module, labels: list[str], dropout: float = 0.1, max_length: int = 128):
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(labels))
        self.temperature = 1.0

    @classmethod
    def from_encoder(cls, location: str, labels: list[str], dropout: float = 0.1, max_length: int = 128,
                     gguf_file: str | None = None) -> PooledClassifier:
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        return cls(AutoModel.from_pretrained(location, **kwargs), labels, dropout, max_length)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder output, (batch, hidden)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Logits, (batch, classes)."""
        return self.head(self.dropout(self.embed(input_ids, attention_mask, **extra)))

    def save(self, path: Path, tokenizer) -> None:
        """Write encoder (safetensors), tokenizer, head and config into ``path``."""
        encoder = self.encoder
        if hasattr(encoder, "merge_and_unload"):  # LoRA: ship a plain model, adapters merged in
            encoder = encoder.merge_and_unload()
        encoder.save_pretrained(path / ENCODER_DIR, safe_serialization=True)
        tokenizer.save_pretrained(path / ENCODER_DIR)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, path / HEAD_FILE)
        config = {"labels": self.labels, "pooling": "mean", "dropout": self.dropout.p,
                  "max_length": self.max_length, "temperature": self.temperature}
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def load(cls, path: Path) -> tuple[PooledClassifier, object]:
        """The model (eval mode) and its tokenizer from an artifact folder written by :meth:`save`."""
        config = json.loads((path / CONFIG_FILE).read_text())
        model = cls(AutoModel.from_pretrained(path / ENCODER_DIR), config["labels"], config["dropout"],
                    config["max_length"])
        model.head.load_state_dict(load_file(path / HEAD_FILE))
        model.temperature = float(config.get("temperature", 1.0))
        tokenizer = AutoTokenizer.from_pretrained(path / ENCODER_DIR)
        return model.eval(), tokenizer

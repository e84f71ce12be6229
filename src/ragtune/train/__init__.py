"""Stage 3 — fine-tune the encoder (sentence-transformers), full or LoRA."""

from ragtune.train.config import LOSSES, AdapterSettings, LoraSettings, TrainConfig
from ragtune.train.trainer import TrainResult, train

__all__ = ["LOSSES", "AdapterSettings", "LoraSettings", "TrainConfig", "TrainResult", "train"]

"""Stage 3 — fine-tune the encoder (sentence-transformers), full or LoRA."""

from ragtune.train.config import LOSSES, LoraSettings, TrainConfig
from ragtune.train.query_adapter import AdapterSettings
from ragtune.train.trainer import TrainResult, train

__all__ = ["LOSSES", "AdapterSettings", "LoraSettings", "TrainConfig", "TrainResult", "train"]

"""One dataclass configures training; every default says where it comes from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from ragtune.errors import ConfigError
from ragtune.train.losses import REGISTRY, LossName

#: the loss names, from the registry in :mod:`ragtune.train.losses`
LOSSES: tuple[str, ...] = tuple(REGISTRY)

Rotate = Literal["pca", "none"]
Batching = Literal["passage", "no-duplicates"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

#: full fine-tuning's rate on all-MiniLM-L6-v2 (measured on protocol T1; see TrainConfig.epochs)
REFERENCE_LEARNING_RATE = 1e-4
#: the width of the model that rate was measured on
REFERENCE_WIDTH = 384


@dataclass
class LoraSettings:
    """A parameter-efficient adapter through peft (LoRA by default): only the adapter is trained and saved.

    ``method="ia3"`` trains (IA)³ instead: learned scales on keys, values and
    the feed-forward output (peft's defaults per architecture), about 16k
    parameters on all-MiniLM-L6-v2; rank, alpha, dropout and ``plus_ratio``
    are LoRA's and do not apply. It stands in for AdapterHub's bottleneck
    adapters, whose ``adapters`` package (1.3.0) requires transformers ~=4.57
    and cannot load beside the installed transformers 5; peft has no
    bottleneck adapter, and (IA)³ is its adapter-style method that adds
    modules on activations rather than a low-rank weight update.
    """

    method: Literal["lora", "ia3"] = "lora"
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: peft's default for the architecture
    # LoRA's own learning rate (TrainConfig.learning_rate is for full fine-tuning):
    # adapters start at zero and want ~10x the full-model rate; measured on T1
    # (eval/README.md): 1e-3 hit@5 0.689 / nDCG@10 0.617, 1e-4 0.671 / 0.602
    learning_rate: float = 1e-3
    # LoRA+ (Hayou et al. 2024, through peft's create_loraplus_optimizer): the B
    # matrices learn at this multiple of the rate (the paper suggests 16); None: plain LoRA
    plus_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("lora", "ia3"):
            raise ConfigError(f"lora method={self.method!r}: choose lora or ia3")
        if self.plus_ratio and self.method != "lora":
            raise ConfigError("lora plus_ratio: LoRA+ applies to LoRA's B matrices; drop it for method=ia3")
        if self.plus_ratio is not None and self.plus_ratio < 1:
            raise ConfigError(f"lora plus_ratio={self.plus_ratio}: must be >= 1 (B's rate over A's)")
        if self.rank < 1:
            raise ConfigError(f"lora rank={self.rank}: must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora dropout={self.dropout}: must be in [0, 1)")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"lora learning_rate={self.learning_rate}: must be in (0, 1)")


@dataclass
class SummarySettings:
    """How chunk summaries are trained (see the module docstring for the measurements)."""

    # protocol A (plain hit@5 / nDCG@10): 2 epochs 0.726 / 0.641, 3 epochs 0.733 / 0.646
    epochs: int = 3
    batch_size: int = 16
    # weight of the first window (what a plain index reads) in a chunk's target
    plain_weight: float = 0.5
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"summary epochs={self.epochs}: must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"summary batch_size={self.batch_size}: must be >= 1")
        if self.plain_weight < 0:
            raise ConfigError(f"summary plain_weight={self.plain_weight}: must be >= 0")


@dataclass
class AdapterSettings:
    """Training knobs of the query adapter (seconds on a CPU for thousands of pairs)."""

    epochs: int = 40
    learning_rate: float = 2e-3
    batch_size: int = 128
    identity_weight: float = 1.0  # strength of the pull towards the identity map
    scale: float = 20.0  # inverse temperature, as sentence-transformers' MNRL

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"adapter epochs={self.epochs}: must be >= 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"adapter learning_rate={self.learning_rate}: must be > 0")


@dataclass
class TrainConfig:
    """How the encoder is fine-tuned.

    ``matryoshka_dims=None`` means the model's width and 1/2, 1/4, 1/6 of it
    (384, 192, 96, 64 for all-MiniLM-L6-v2), so vectors stay useful truncated.
    ``max_seq_length=None`` picks the 98th percentile of the training texts'
    token lengths (rounded up to 32, capped by the model): CPU time grows with
    sequence length, and windows already fit the model.
    """

    base: str | None = None
    loss: LossName = "mnrl"
    matryoshka: bool = True
    matryoshka_dims: tuple[int, ...] | None = None
    # "pca": rotate the base model's vector space onto the principal axes of the
    # training texts before Matryoshka training (ragtune.train.rotation; full-width
    # cosines unchanged, truncated vectors keep more); "none": leave it
    rotate: Rotate = "pca"
    # weight of each dimension's loss, largest dimension first (None: all 1)
    matryoshka_weights: tuple[float, ...] | None = None
    # measured on protocol T1 (eval/README.md): lr 3e-5 x 1 epoch hit@5 0.692,
    # lr 1e-4 x 2 epochs 0.713, lr 2e-4 x 2 epochs 0.707 (anchor: 0.696); with
    # passage-grouped batches lr 1e-4 0.708 / nDCG@10 0.628, lr 2e-4 0.706 / 0.620,
    # 3 epochs 0.715 / 0.629 at 1.4x the time
    epochs: float = 2.0
    # with batching="passage": distinct passages per batch, each with all its queries
    batch_size: int = 32
    # "passage": batches of distinct passages with all their queries, each passage
    # embedded once (losses with a grouped form, PASSAGE_GROUPED in ragtune.train.losses;
    # see ragtune.train.passage_batches);
    # "no-duplicates": one row per pair, no text twice in a batch (any loss)
    batching: Batching = "passage"
    # None: follows the model, REFERENCE_LEARNING_RATE x REFERENCE_WIDTH / width
    # (see learning_rate_for): 1e-4 for all-MiniLM-L6-v2 (384 wide, the rate
    # measured above), 5e-5 for all-mpnet-base-v2 (768), inside the 2e-5...5e-5
    # sentence-transformers' own mpnet training runs use
    learning_rate: float | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # optimizer steps accumulate gradients of this many batches (a larger effective
    # batch for the optimizer; in-batch negatives still come from one batch)
    gradient_accumulation: int = 1
    max_seq_length: int | None = None
    seed: int = 13
    precision: Precision = "auto"
    save_steps: int = 50
    max_steps: int = -1
    mini_batch_size: int = 16  # for cached-mnrl
    # forgetting guard: the embedding layer carries most of the base model's
    # general vocabulary knowledge, so it moves at a fraction of the learning rate
    embedding_lr_scale: float = 0.1
    # freeze the token embeddings and the lowest N transformer layers (0: none);
    # saves their backward pass on CPU and keeps general features intact
    freeze_layers: int = 0
    # WiSE-FT (ragtune.train.interpolate): mix tuned and base weights after training.
    # "auto": choose the mix on the validation pairs (the smallest alpha within
    # 0.005 nDCG@10 of the best), alpha 0.5 when there are none; a number in
    # (0, 1]: that alpha; "off": keep the tuned weights. Measured on T1 (given
    # pairs, no validation split): alpha 0.5 keeps Uber nDCG@10 (0.627 vs 0.628),
    # brings dbpedia-5k back to the base model's 0.594 (unmixed 0.583) and keeps
    # 90 % of nDCG@10 at 64 dims (unmixed 88 %)
    interpolate: str | float = "auto"
    # stop when validation nDCG@10 (checked every save_steps) has not improved
    # this many times, and keep the best checkpoint (0: off; needs val pairs)
    early_stopping_patience: int = 0
    # chunk summaries (ragtune.train.summary): when train() is given the chunks of
    # the corpus to be searched, a last stage pulls each long chunk's truncated
    # read towards the model's view of the whole chunk. Measured on protocol A:
    # plain hit@5 / nDCG@10 0.703 / 0.624 -> 0.733 / 0.646 (best-window 0.884 -> 0.877)
    summarize: bool = True
    summary: SummarySettings | None = None  # None: defaults
    lora: LoraSettings | None = None
    # train only a linear map on query vectors (documents and their index unchanged)
    query_adapter: AdapterSettings | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON/CLI overrides arrive as dicts; True means default settings
        if isinstance(self.lora, dict) or self.lora is True:
            self.lora = LoraSettings(**(self.lora if isinstance(self.lora, dict) else {}))
        if isinstance(self.query_adapter, dict) or self.query_adapter is True:
            qa = self.query_adapter
            self.query_adapter = AdapterSettings(**(qa if isinstance(qa, dict) else {}))
        if self.summary is None or isinstance(self.summary, dict):
            self.summary = SummarySettings(**(self.summary or {}))
        self.interpolate = _interpolate_mode(self.interpolate)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.gradient_accumulation < 1:
            raise ConfigError(f"gradient_accumulation={self.gradient_accumulation}: must be >= 1")
        if not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise ConfigError(
                f"warmup_ratio={self.warmup_ratio}, weight_decay={self.weight_decay}: need 0 <= warmup_ratio < 1, weight_decay >= 0"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps={self.max_steps}: give a number of steps >= 1 (or -1: train by epochs)")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError(f"epochs={self.epochs}: must be > 0")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size}: in-batch negatives need at least 2")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate={self.learning_rate}: must be in (0, 1)")
        if not 0 <= self.embedding_lr_scale <= 1:
            raise ConfigError(f"embedding_lr_scale={self.embedding_lr_scale}: must be in [0, 1]")
        if self.early_stopping_patience < 0:
            raise ConfigError(f"early_stopping_patience={self.early_stopping_patience}: must be >= 0")
        if self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers={self.freeze_layers}: must be >= 0")
        if self.rotate not in get_args(Rotate):
            raise ConfigError(f"rotate={self.rotate!r}: choose {_either(get_args(Rotate))}")
        if self.batching not in get_args(Batching):
            raise ConfigError(f"batching={self.batching!r}: choose {_either(get_args(Batching))}")
        if self.precision not in get_args(Precision):
            raise ConfigError(f"precision={self.precision!r}: choose {_either(get_args(Precision), quote=False)}")
        if self.lora is not None and self.query_adapter is not None:
            raise ConfigError("lora and query_adapter: choose one way to train, not both")
        if self.matryoshka_dims is not None and any(d < 1 for d in self.matryoshka_dims):
            raise ConfigError(f"matryoshka_dims={self.matryoshka_dims}: dimensions must be positive")

    @property
    def effective_learning_rate(self) -> float:
        """The rate training uses: LoRA's own when an adapter is trained, else ``learning_rate``.

        A config whose rate follows the model (``learning_rate=None``) is resolved
        with :meth:`for_width` first; read alone it gives the reference rate.
        """
        if self.lora is not None:
            return self.lora.learning_rate
        return self.learning_rate if self.learning_rate is not None else REFERENCE_LEARNING_RATE

    def learning_rate_for(self, width: int) -> float:
        """Full fine-tuning's rate for a model ``width`` wide: the given one, or the reference scaled by width.

        Wider transformers take smaller steps (their updates move more
        coordinates at once); 1/width is the usual scaling, anchored at the rate
        measured on the 384-wide default model.
        """
        if self.learning_rate is not None:
            return self.learning_rate
        return float(f"{REFERENCE_LEARNING_RATE * REFERENCE_WIDTH / max(1, width):.3g}")

    def for_width(self, width: int) -> TrainConfig:
        """This config with the defaults that follow the model filled in (the learning rate)."""
        if self.learning_rate is not None:
            return self
        return replace(self, learning_rate=self.learning_rate_for(width))

    def weights_for(self, dims: list[int]) -> list[float] | None:
        """Matryoshka loss weights for ``dims`` (largest first), checked against their count."""
        if self.matryoshka_weights is None:
            return None
        if len(self.matryoshka_weights) != len(dims):
            raise ConfigError(
                f"matryoshka_weights={list(self.matryoshka_weights)}: need one weight per dimension {dims}"
            )
        return [float(w) for w in self.matryoshka_weights]

    def dims_for(self, width: int) -> list[int]:
        """Matryoshka dimensions for a model of ``width``, largest first."""
        if self.matryoshka_dims:
            bad = [d for d in self.matryoshka_dims if d > width]
            if bad:
                raise ConfigError(f"matryoshka_dims={list(self.matryoshka_dims)}: {bad} exceed the model width {width}")
            return sorted(set(self.matryoshka_dims), reverse=True)
        return sorted({width, width // 2, width // 4, width // 6} - {0}, reverse=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _either(choices: tuple[str, ...], quote: bool = True) -> str:
    """``'a' or 'b'``; ``a, b or c`` unquoted."""
    words = [repr(c) if quote else c for c in choices]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def _interpolate_mode(value: Any) -> str | float:
    """``auto``/``off`` or an alpha in (0, 1]; booleans and numeric strings (CLI, JSON) accepted."""
    if value is True:
        return "auto"
    if value is None or value is False:
        return "off"
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"interpolate={value!r}: choose 'auto', 'off' or a mix alpha in (0, 1]") from None
    if not 0 < alpha <= 1:
        raise ConfigError(f"interpolate={value!r}: the mix alpha must be in (0, 1] (1 keeps the tuned weights)")
    return "off" if alpha == 1 else alpha

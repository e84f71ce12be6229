"""Options several commands share, each declared once as a ``typing.Annotated`` alias, and their parsing.

A command takes an alias as a parameter's type (``store: Store``) and gives the
default as the parameter's default; defaults are read from the stages' config
dataclasses (``ChunkConfig``, ``GenerationConfig``, ``TrainConfig``), never
restated here. Typer allows no default inside ``Annotated``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragtune.corpus.reader import ChunkConfig
from ragtune.encoders.runtime import BACKENDS, FORMATS
from ragtune.errors import RagtuneError
from ragtune.evaluation.classification import TASKS
from ragtune.evaluation.ragas_eval import DEFAULT_MAX_QUERIES
from ragtune.train.config import LOSSES, LoraSettings
from ragtune.train.config import TrainConfig as TrainDefaults

#: the backend a model runs on unless --backend says otherwise (the model as saved)
DEFAULT_BACKEND = "torch"
#: --task's default
RETRIEVAL = TASKS[0]

STORE_HELP = (
    "Where the collection lives: a folder (Qdrant, embedded), a Qdrant server URL, ':memory:', "
    "or milvus:PATH.db / milvus:http://HOST:19530 (Milvus). --qdrant is the same option."
)
BACKEND_HELP = f"{' | '.join(BACKENDS)}: run a form `ragtune export` wrote (default file: the int8 one when present)."
BACKEND_FILE_HELP = "The exported file to run, e.g. MODEL/onnx/model.onnx."
WORKERS_HELP = "Encode in N CPU worker processes (every GPU is used when there are several)."
LOSS_HELP = " | ".join(LOSSES)
TASK_HELP = "retrieval | classification (labelled texts: a logistic-regression probe on the embeddings, MTEB's way)."
LABELLED_HELP = (
    "--task classification: JSONL/CSV with text,label (optional split) columns, "
    "or a folder whose subfolders are the labels (a corpus folder works)."
)
HOSTED_HELP = (
    "A hosted embedding model scored beside base and tuned (plain mode; time, tokens and cost in the report), its vectors "
    "cached: openai:text-embedding-3-small, http://127.0.0.1:8000/v1[#MODEL] (key: RAGTUNE_BASELINE_KEY) or ollama:MODEL."
)

# the model, its backend, and the store its collection lives in --------------------------
Model = Annotated[str, typer.Option("--model", "-m", help="Model folder, hub id, or 'default' (the bundled all-MiniLM-L6-v2).")]
Store = Annotated[str | None, typer.Option("--store", "--qdrant", help=STORE_HELP)]
Collection = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="QDRANT_API_KEY", help="The store server's API key (a Milvus server's token).")
]
Backend = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
BackendFile = Annotated[Path | None, typer.Option("--backend-file", help=BACKEND_FILE_HELP)]
Workers = Annotated[int, typer.Option("--workers", help=WORKERS_HELP)]

# the corpus and the task ---------------------------------------------------------------
Corpus = Annotated[Path, typer.Argument(help="A document or a folder of documents.")]
ChunkSize = Annotated[
    int | None, typer.Option("--chunk-size", help=f"Chunk size in tokens (default {ChunkConfig.chunk_size}, LlamaIndex's).")
]
Task = Annotated[str, typer.Option("--task", help=TASK_HELP)]

# training: autotrain's option names (the LoRA trainer CLI people know), shared by ``train`` and ``run``
JudgeQueries = Annotated[int | None, typer.Option(
    "--judge-queries",
    help=f"With --llm: sampled questions the LLM answers and judges per retriever (default {DEFAULT_MAX_QUERIES}; each costs ~10 LLM calls).",
)]
LearningRate = Annotated[float | None, typer.Option("--lr", "--learning-rate", help="default: 1e-4 x 384 / the model's width (1e-4 for all-MiniLM-L6-v2, 5e-5 for a 768-wide model)")]
WarmupRatio = Annotated[
    float | None,
    typer.Option("--warmup-ratio", help=f"Share of steps warming the learning rate up (default {TrainDefaults.warmup_ratio})."),
]
WeightDecay = Annotated[
    float | None, typer.Option("--weight-decay", help=f"AdamW weight decay (default {TrainDefaults.weight_decay}).")
]
GradientAccumulation = Annotated[
    int | None,
    typer.Option(
        "--gradient-accumulation", "--gradient-accumulation-steps",
        help=f"Batches whose gradients add up to one optimizer step (default {TrainDefaults.gradient_accumulation}).",
    ),
]
MixedPrecision = Annotated[
    str | None,
    typer.Option("--mixed-precision", "--precision", help="auto | bf16 | fp16 | none (fp32); auto: bf16 where the hardware runs it."),
]
LoraR = Annotated[
    int | None,
    typer.Option(
        "--lora-r", "--lora-rank",
        help="Train a LoRA adapter of this rank instead of all weights (any --lora-* option turns LoRA on).",
    ),
]
LoraAlpha = Annotated[int | None, typer.Option("--lora-alpha", help=f"LoRA alpha (default {LoraSettings.alpha}).")]
LoraDropout = Annotated[float | None, typer.Option("--lora-dropout", help=f"LoRA dropout (default {LoraSettings.dropout}).")]
LoraPlusRatio = Annotated[
    float | None, typer.Option("--lora-plus-ratio", help="LoRA+: B matrices learn at this multiple of the rate (e.g. 16).")
]
LoraLr = Annotated[
    float | None,
    typer.Option("--lora-lr", help=f"LoRA's learning rate (default {LoraSettings.learning_rate}); --lr sets it too when LoRA is on and this is not given."),
]
PeftMethod = Annotated[
    str | None,
    typer.Option(
        "--peft-method",
        help="lora | ia3: the peft adapter to train ((IA)3 stands in for bottleneck adapters; see ragtune.train.LoraSettings).",
    ),
]


def training_options(
    lr: float | None, warmup_ratio: float | None, weight_decay: float | None, gradient_accumulation: int | None,
    mixed_precision: str | None, lora_r: int | None, lora_alpha: int | None, lora_dropout: float | None,
    lora_plus_ratio: float | None, lora_lr: float | None, peft_method: str | None = None,
) -> dict[str, Any]:
    """autotrain-named options → ``TrainConfig`` fields (dotted, for ``--set``-style merging); None: not given."""
    precision = {"none": "fp32", "no": "fp32"}.get(str(mixed_precision).lower(), mixed_precision) if mixed_precision else None
    out: dict[str, Any] = {
        "learning_rate": lr, "warmup_ratio": warmup_ratio, "weight_decay": weight_decay,
        "gradient_accumulation": gradient_accumulation, "precision": precision,
    }
    lora = {"method": peft_method, "rank": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
            "plus_ratio": lora_plus_ratio, "learning_rate": lora_lr if lora_lr is not None else lr}
    if any(v is not None for k, v in lora.items() if k != "learning_rate"):
        out.update({f"lora.{k}": v for k, v in lora.items()})
    return {k: v for k, v in out.items() if v is not None}


def given(options: dict[str, Any]) -> list[str]:
    """``{dotted key: value}`` of the options given (None: not given) as ``--set`` items."""
    return [f"{k}={json.dumps(v)}" for k, v in options.items() if v is not None]


def formats(value: str) -> list[str]:
    """``--format`` / ``--export``: comma-separated forms, each one of :data:`FORMATS`."""
    wanted = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise RagtuneError(f"--format {value!r}: choose from {', '.join(FORMATS)}")
    return wanted


def dims(value: str | None) -> tuple[int, ...] | None:
    """``--dims 384,128,64``; None when not given."""
    if not value:
        return None
    try:
        return tuple(int(d) for d in value.split(","))
    except ValueError:
        raise RagtuneError(f"--dims {value!r}: give comma-separated integers, e.g. 384,128,64") from None


def task(value: str, data: Path | None) -> str:
    """The --task, checked against what was given: one-line errors before anything loads."""
    if value not in TASKS:
        raise RagtuneError(f"--task {value!r}: choose {' or '.join(TASKS)}")
    if value == "classification" and data is None:
        raise RagtuneError("--task classification needs --data (labelled texts: JSONL/CSV with text,label, or a folder of label subfolders)")
    return value


def described(model: str, backend: str, file: Path | None) -> str:
    """The model as a report names it: with its backend and file when not torch."""
    return model if backend == DEFAULT_BACKEND else f"{model} ({backend}{': ' + str(file) if file else ''})"

QUERIES_HELP = (
    "Folder of served-query logs (ragtune serve --log-queries DIR, or the LlamaIndex retriever's "
    "query_log=DIR): its questions become training pairs, labelled by user feedback or, without it, by a "
    "model and BM25 agreeing on the top chunk (run: the tuned model, which then trains further on them "
    "into RUN/model-served; generate: the base model)."
)

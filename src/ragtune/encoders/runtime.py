"""Inference backends: the tuned model in the fastest form a machine runs, on ragtune's own stack.

``ragtune export`` writes a model folder's transformer as ONNX (fp32, or int8
quantized for this CPU by onnxruntime) or OpenVINO IR (fp32/bf16, or int8
calibrated by NNCF on the run's own texts), laid out where sentence-transformers
looks for them (``onnx/model.onnx``, ``onnx/model_qint8_avx512_vnni.onnx``,
``openvino/openvino_model.xml``, ``openvino/openvino_model_qint8_quantized.xml``)
so users with a matching optimum can load them with
``SentenceTransformer(DIR, backend=...)``.

ragtune itself does not need optimum (whose releases pin transformers far
below the version ragtune runs on): :func:`attach` swaps the forward pass of
a loaded model's transformer module for an onnxruntime or OpenVINO session,
and everything after it (pooling, the PCA rotation, a query adapter,
normalisation) stays the model's own modules. That is written here by hand
because no installed library runs an exported transformer inside a current
sentence-transformers model. The model's weights fingerprint is unchanged, so
an index built with one backend is searched with another.

Example:
    >>> path = export_model("runs/demo/model", "onnx-int8")  # doctest: +SKIP
    >>> model = load_model("runs/demo/model", backend="onnx", file=path)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import platform
import types
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError, InputError
from ragtune.providers import optional_import

log = logging.getLogger(__name__)



BACKENDS = ("torch", "onnx", "openvino")
#: forms of the transformer itself (export_model); "static" is a separate student model (ragtune.train.static)
TRANSFORMER_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
FORMATS = (*TRANSFORMER_FORMATS, "static")
ONNX_FILE = "onnx/model.onnx"
OPENVINO_FILE = "openvino/openvino_model.xml"
OPENVINO_INT8_FILE = "openvino/openvino_model_qint8_quantized.xml"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: calibration texts NNCF sees for static int8 (sentence-transformers' default is 300)
CALIBRATION_SIZE = 300


def cpu_isa() -> str:
    """The int8 kernel family of this CPU, named as sentence-transformers names its files."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def backend_of(fmt: str) -> str:
    """``onnx-int8`` → ``onnx``; ``openvino-int8`` → ``openvino``; ``static`` (its own folder) → ``torch``."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    return "torch" if fmt == "static" else fmt.split("-", 1)[0]


def static_folder(model_dir: str | Path) -> Path:
    """Where the static student of ``model_dir`` goes by default: a sibling ``NAME-static`` folder."""
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + "-static")


def default_file(model_dir: str | Path, backend: str) -> Path:
    """The exported file ``backend`` uses in ``model_dir`` when none is named: int8 when present."""
    model_dir = Path(model_dir)
    if backend == "onnx":
        quantized = sorted((model_dir / "onnx").glob("model_qint8_*.onnx"))
        return quantized[0] if quantized else model_dir / ONNX_FILE
    if backend == "openvino":
        q = model_dir / OPENVINO_INT8_FILE
        return q if q.exists() else model_dir / OPENVINO_FILE
    raise ConfigError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")


# --- export ----------------------------------------------------------------


# --- running ----------------------------------------------------------------


def attach(model: Any, backend: str, file: str | Path | None = None, model_dir: str | Path | None = None) -> Any:
    """Run ``model``'s transformer module through ``backend`` (``torch`` leaves it as it is).

    Args:
        model: a loaded ``SentenceTransformer``.
        backend: ``torch``, ``onnx`` or ``openvino``.
        file: the exported file (default: the int8 one in ``model_dir`` when present).
        model_dir: the folder the exports live in.
    """
    if backend == "torch":
        return model
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    path = Path(file) if file is not None else (default_file(model_dir, backend) if model_dir else None)
    if path is None or not path.exists():
        raise InputError(
            f"{path or backend}: no exported {backend} model; write one with "
            f"`ragtune export MODEL_DIR --format {backend}` (or {backend}-int8)"
        )
    run = _OnnxRunner(path) if backend == "onnx" else _OpenVINORunner(path)
    transformer = model[0]

    def forward(self: Any, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        import torch

        inputs = {n: features[n].cpu().numpy().astype(np.int64) for n in run.inputs if n in features}
        if "token_type_ids" in run.inputs and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
        features["token_embeddings"] = torch.from_numpy(run(inputs))
        return features

    transformer.forward = types.MethodType(forward, transformer)
    model.ragtune_backend = {"backend": backend, "file": str(path)}
    return model


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


class _OnnxRunner:
    """An onnxruntime session: token-id arrays in, token embeddings out."""

    def __init__(self, path: Path) -> None:
        ort = optional_import("onnxruntime")

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, inputs)[0]


class _OpenVINORunner:
    """An OpenVINO compiled model on the CPU: latency mode for a few texts, streams for many.

    Measured on 2 cores (AMD EPYC, AVX-512 VNNI, tuned Uber model, int8): a batch of 256-token
    windows split into sub-batches of 8 over the throughput mode's streams (one per core) encodes
    78 docs/s against 71 for the whole batch on one latency-mode request, while one query is
    fastest on the latency-mode request (all cores on one text). On an Intel Xeon with AMX
    the streams gained nothing (84 vs 86 docs/s); they cost nothing either for batches.
    """

    #: texts per request in throughput mode; batches up to this size run in latency mode
    SPLIT = 8

    def __init__(self, path: Path) -> None:
        ov = optional_import("openvino")

        core = ov.Core()
        model = core.read_model(str(path))
        self.latency = core.compile_model(
            model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": _threads()}
        )
        self.inputs = tuple(p.get_any_name() for p in self.latency.inputs)
        self.request = self.latency.create_infer_request()
        self.queue = None
        if _threads() > 1:
            streams = core.compile_model(
                model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": _threads()}
            )
            jobs = int(streams.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            if jobs > 1:
                self.queue = ov.AsyncInferQueue(streams, jobs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        if self.queue is None or n <= self.SPLIT:
            return np.asarray(self.request.infer(inputs)[self.latency.outputs[0]])
        parts: list[np.ndarray | None] = [None] * ((n + self.SPLIT - 1) // self.SPLIT)

        def done(request: Any, i: int) -> None:
            parts[i] = np.array(request.get_output_tensor(0).data)  # a copy: the request's buffer is reused

        self.queue.set_callback(done)
        for i, a in enumerate(range(0, n, self.SPLIT)):
            self.queue.start_async({k: v[a : a + self.SPLIT] for k, v in inputs.items()}, i)
        self.queue.wait_all()
        return np.concatenate(parts, axis=0)

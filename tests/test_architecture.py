"""Dependencies point down: import-linter contracts in pyproject.toml, run as a test.

The core (``src/ragtune``) never imports an integration (the server, the
LlamaIndex packages), and inside the core the CLI wires the pipeline, the
pipeline runs the stages, and stages import only what lies below them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "integrations" / "llama_index"), str(ROOT / "integrations" / "server")]
    if extra_path is not None:
        paths.insert(0, str(extra_path))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_import_contracts_hold():
    proc = lint()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("evaluation/_leak.py", "from llama_index.embeddings.ragtune import RagtuneEmbedding\n", "never imports the integrations"),
        ("_serve_leak.py", "import ragtune_server\n", "never imports the integrations"),
        ("index_leak.py", "from ragtune.train import trainer\n", "Core layers"),
    ],
)
def test_contracts_catch_a_planted_import(tmp_path, module, line, contract):
    """The contracts are not vacuous: a copy of the core with one bad import breaks them."""
    copy = tmp_path / "ragtune"
    shutil.copytree(ROOT / "src" / "ragtune", copy, ignore=shutil.ignore_patterns("__pycache__"))
    if module == "index_leak.py":  # a stage importing a sibling stage sideways
        (copy / "index.py").write_text((copy / "index.py").read_text() + "\n" + line)
    else:
        (copy / module).write_text(line)
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert contract in proc.stdout and "BROKEN" in proc.stdout

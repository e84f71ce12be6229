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

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

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


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _named(layer: str) -> set[str]:
    return {part.strip() for part in layer.replace(":", "|").split("|") if part.strip()}


def test_import_contracts_hold():
    proc = lint()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(_contracts())} kept, 0 broken" in proc.stdout


def _packages() -> dict[str, Path]:
    """Every package of src/ and integrations/ by dotted name (the LlamaIndex namespace's own folders excluded)."""
    roots = [ROOT / "src", ROOT / "integrations" / "server", ROOT / "integrations" / "llama_index"]
    found = {}
    for root in roots:
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            found[".".join(init.parent.relative_to(root).parts)] = init.parent
    return found


def test_every_module_is_named_by_a_contract():
    """A new module or package must be placed in the layers of its package (so a cycle or an upward import fails)."""
    named: dict[str, set[str]] = {}
    top: set[str] = set()
    for c in _contracts():
        layers = [n for layer in c.get("layers", []) for n in _named(layer)]
        for container in c.get("containers", []):
            named.setdefault(container, set()).update(layers)
        if not c.get("containers"):
            top.update(layers)
    missing = []
    for name, folder in _packages().items():
        children = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        children |= {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
        if name.startswith("llama_index."):
            if name not in top:
                missing.append(name)
            continue
        if name == "ragtune_server" and name not in top:
            missing.append(name)
        if not children:
            continue
        missing += [f"{name}.{child}" for child in sorted(children - named.get(name, set()))]
    assert not missing, f"not in any import-linter contract of pyproject.toml: {missing}"


def test_no_import_cycle_between_modules():
    """The module graph of the core and the integrations is acyclic (function-level imports included)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(
        "ragtune", "ragtune_server", "llama_index.embeddings.ragtune",
        "llama_index.retrievers.ragtune", "llama_index.vector_stores.ragtune",
    )
    packages = set(_packages())
    edges = {
        m: {d for d in graph.find_modules_directly_imported_by(m) if d not in packages}
        for m in graph.modules
        if m not in packages  # a package's __init__ re-exporting its children is not a cycle
    }
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next((d for d in it if d in edges), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    assert not cycles, f"import cycles: {cycles}"


def test_core_top_level_stays_small():
    """src/ragtune holds a few shared modules; everything else lives in a package."""
    modules = sorted(p.name for p in (ROOT / "src" / "ragtune").glob("*.py"))
    assert len(modules) <= 9, modules


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
        leak = copy / "index" / "chunk_index.py"
        leak.write_text(leak.read_text() + "\n" + line)
    else:
        (copy / module).write_text(line)
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert contract in proc.stdout and "BROKEN" in proc.stdout


def test_optional_packages_name_the_extra_that_installs_them():
    """ragtune.providers.PACKAGES (what a missing-package error tells a user to install) agrees with pyproject's extras."""
    import re

    from ragtune.providers import PACKAGES

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {extra: {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower() for req in reqs} for extra, reqs in extras.items()}
    wrong = {module: (package, extra) for module, (package, extra) in PACKAGES.items() if package not in listed.get(extra, set())}
    assert not wrong, f"not in the named extra of pyproject.toml: {wrong}"

"""Shared plumbing for the benchmarks: data paths, evaluation of labelled models, result files.

Every protocol writes one JSON: ``protocol``, ``metrics`` (label → dim → metric
→ float; labels ``base``, ``tuned``, ``base+long``, ``tuned+long``, ``anchor``),
``timings`` (seconds per stage, training as ``train_s``), ``machine``, plus
the Markdown/HTML report beside it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragtune import console

# benchmarks print ragtune's progress lines and their own results, not third-party bars
console.setup()

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAGTUNE_DATA", ROOT.parent / "shared" / "data"))
M_DIMS = [384, 256, 128, 64]


def require(*parts: str) -> Path:
    """A path under the shared data folder; exits cleanly with a message when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        print(f"SKIPPED: {path} is not available (benchmark data lives in ../shared/data)", file=sys.stderr)
        sys.exit(0)
    return path


@dataclass
class Bench:
    """Collects metrics, evaluation results and timings for one protocol run."""

    protocol: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    fusions: dict[str, Any] = field(default_factory=dict)  # label -> HybridConfig (Bench.fit)

    def timed(self, key: str):
        bench = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()
                return self

            def __exit__(self, *exc):
                bench.timings[key] = round(time.perf_counter() - self.t0, 2)
                return False

        return _T()

    def evaluate(
        self, dataset: Any, models: dict[str, Any], dims: list[int] | None, long_chunks: bool = False,
        lexical: bool = True,
    ) -> dict[str, Any]:
        """Score ``models`` (label → model) through ragtune's one evaluation loop; record and print each label.

        With ``lexical``, ``bm25`` and ``{label}+hybrid`` too, each fused at the weight in
        :attr:`fusions` (fitted on held-out pairs by :meth:`fit`), else the default.
        """
        from ragtune.evaluation import evaluate_models

        results = evaluate_models(dataset, models, dims, long_chunks, lexical=lexical, hybrid=self.fusions)
        for label, res in results.items():
            self.results[label] = res
            self.metrics[label] = res.metrics
            self.timings[f"eval_{label}_s"] = round(sum(v for k, v in res.seconds.items() if k.endswith("_s")), 2)
            m = res.metrics[max(res.metrics, key=int)]
            print(f"  {label:<11} hit@5 {m['hit@5']:.3f}  ndcg@10 {m['ndcg@10']:.3f}  mrr@10 {m['mrr@10']:.3f}", flush=True)
        return results

    def fit(self, models: dict[str, Any], held_out: Any) -> None:
        """Fit each model's hybrid fusion on ``held_out`` (pairs the model did not train on), as ``ragtune run`` does."""
        from ragtune.evaluation.evaluator import bm25_matrix
        from ragtune.evaluation.hybrid import fit_hybrid

        with self.timed("fit_hybrid_s"):
            bm25, _ = bm25_matrix(held_out)  # one BM25 scoring serves every model's fit
            for label, model in models.items():
                self.fusions[label] = fit_hybrid(model, held_out, bm25=bm25)
        self.extra["hybrid"] = {label: f.to_json() for label, f in self.fusions.items()}
        self.extra["hybrid_fit_on"] = {"name": held_out.name, "queries": len(held_out.queries),
                                       "corpus": len(held_out.corpus)}
        print("  fitted hybrid weights (dense share): "
              + ", ".join(f"{k} {v.alpha:.2f}" for k, v in self.fusions.items()), flush=True)

    def write(self, out: str | Path, dataset: Any) -> dict[str, Any]:
        from ragtune._io import write_json
        from ragtune.machine import machine_info, package_versions
        from ragtune.report import build_report, write_report

        out = Path(out)
        report = build_report(dataset, self.results, self.models, timings=self.timings, extra=self.extra)
        result = {
            "protocol": self.protocol,
            "command": "python " + " ".join(sys.argv),
            "metrics": self.metrics,
            "timings": self.timings,
            "machine": machine_info(),
            "versions": package_versions(),
            **self.extra,
            "comparison": report.get("comparison", {}),
        }
        write_json(out, result)
        write_report(report, out.with_name(out.stem + "_report"))
        return result


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs for TrainConfig fields, parsed as ``ragtune run --set train.key=value`` is."""
    from ragtune.config import parse_sets

    return parse_sets(items)


def latency_ms(samples: list[float], digits: int = 3) -> dict[str, float]:
    """``{"p50_ms", "p95_ms"}`` of per-call latencies in milliseconds."""
    import numpy as np

    return {f"p{q}_ms": round(float(np.percentile(samples, q)), digits) for q in (50, 95)}

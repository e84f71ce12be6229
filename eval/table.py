"""Print the Markdown table of eval/README.md from the result JSONs in eval/results/.

``python eval/table.py [RESULTS_DIR]`` — one row per label of each protocol
file, at the full dimension (and 64 for M), with the command recorded in it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ORDER = ("T1", "T2", "A", "G", "M", "anchor", "search")


def rows(results: Path) -> list[str]:
    out = [
        "| protocol | label | dim | hit@5 | nDCG@10 | MRR@10 | train_s | file |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    files = sorted(results.glob("*.json"), key=lambda f: (ORDER.index(_proto(f)) if _proto(f) in ORDER else 99, f.name))
    for f in files:
        data = json.loads(f.read_text())
        proto = data.get("protocol", f.stem)
        timings = data.get("timings", {})
        for label, by_dim in data.get("metrics", {}).items():
            dims = sorted(by_dim, key=int, reverse=True)
            shown = dims if proto == "M" else dims[:1]
            for dim in shown:
                m = by_dim[dim]
                # protocol F trains two models: their times are train_synthetic_s and train_tuned_s
                train = timings.get(f"train_{label}_s", timings.get(
                    "anchor_train_s" if label == "anchor" else "train_s", "")) if label in ("tuned", "anchor", "synthetic") else ""
                out.append(
                    f"| {proto} | {label} | {dim} | {m.get('hit@5', float('nan')):.3f} | {m.get('ndcg@10', float('nan')):.3f} "
                    f"| {m.get('mrr@10', float('nan')):.3f} | {train} | {f.name} |"
                )
    return out


def training_rows(results: Path) -> list[str]:
    """One row per trained model: how it was trained, what it cost, what it scored at full width."""
    out = [
        "| file | protocol | mode | lr | WiSE-FT mix | chunk summaries | trainable params | size on disk (MB) | train_s | vs anchor | hit@5 | nDCG@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in sorted(results.glob("*.json")):
        data = json.loads(f.read_text())
        tr = data.get("training")
        tuned = data.get("metrics", {}).get("tuned")
        if not tr or not tuned:
            continue
        cfg = tr.get("config", {})
        mode = _method(cfg)
        m = tuned[max(tuned, key=int)]
        mix = (tr.get("interpolation") or {}).get("alpha", "off")
        ratio = data.get("time_ratio_vs_anchor", "")
        summary = tr.get("summary") or {}
        summaries = f"{summary['chunks']} × {summary['epochs']} ep" if summary.get("chunks") else "–"
        out.append(
            f"| {f.name} | {data.get('protocol', '')} | {mode} | {(cfg.get('lora') or {}).get('learning_rate', cfg.get('learning_rate', ''))} | {mix} | {summaries} | {tr.get('trainable_params', '')} "
            f"| {tr.get('size_on_disk_mb', '')} | {data.get('timings', {}).get('train_s', '')} | {ratio} "
            f"| {m.get('hit@5', float('nan')):.3f} | {m.get('ndcg@10', float('nan')):.3f} |"
        )
    return out


def speed_rows(results: Path) -> list[str]:
    """One row per form of the model in each ``eval/speed.py`` result (ratios within that run)."""
    out = [
        "| file | form | docs/s | × torch | query p50 / p95 ms | load s | MB | nDCG@10 plain (Δ) | nDCG@10 windows (Δ) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f, data in _benchmark(results, "speed"):
        for r in data["runs"]:
            out.append(
                f"| {f.name} | {r['form']} | {r['docs_per_s']} | {r.get('x_torch_docs_per_s', '')} "
                f"| {r['query_p50_ms']} / {r['query_p95_ms']} | {r['load_s']} | {r['size_mb']} "
                f"| {r['plain']['ndcg@10']:.3f} ({r.get('ndcg_delta_plain', 0):+.3f}) "
                f"| {r['windows']['ndcg@10']:.3f} ({r.get('ndcg_delta_windows', 0):+.3f}) |"
            )
    return out


def server_rows(results: Path) -> list[str]:
    """One row per (server, variant, clients) of the ``server`` part of each ``eval/speed.py`` result."""
    out = [
        "| file | server | min cosine to encode | variant | clients | req/s | texts/s | p50 ms | p95 ms | errors |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f, data in _benchmark(results, "speed"):
        for srv in (data.get("server") or {}).get("servers", []):
            for r in srv["results"]:
                lat = r.get("latency_ms") or {}
                variant = "single" if r["texts_per_request"] == 1 else f"{r['texts_per_request']} texts"
                out.append(
                    f"| {f.name} | {srv['name']} | {srv.get('min_cosine_to_encode', '')} | {variant} "
                    f"| {r['concurrency']} | {r['requests_per_s']} | {r['texts_per_s']} | {lat.get('p50', '')} "
                    f"| {lat.get('p95', '')} | {r['errors']} |"
                )
    return out


def scale_rows(results: Path) -> list[str]:
    """One row per (store, size) of each ``eval/scale.py`` result."""
    out = [
        "| file | store | chunks | window vectors | ingest s | chunks/s | windows p50 / p95 ms | plain p95 ms "
        "| two-stage p95 ms | recall@10 windows / plain | peak RSS GiB | disk MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f, data in _benchmark(results, "scale"):
        for r in data["runs"]:
            m = r["modes"]
            out.append(
                f"| {f.name} | {r['store']} | {r['chunks']:,} | {r['window_vectors']:,} | {r['ingest_s']} "
                f"| {r['ingest_points_per_s']} | {r['query_p50_ms']} / {r['query_p95_ms']} | {m['plain']['p95_ms']} "
                f"| {m['windows_two_stage']['p95_ms']} | {m['windows']['recall_at_10']} / {m['plain']['recall_at_10']} "
                f"| {r['peak_rss_gib']} | {r['disk_mb']} |"
            )
    return out


def hybrid_rows(results: Path) -> list[str]:
    """Each protocol of ``eval/hybrid.py``'s result: every label, the fitted weights and the headline CI."""
    out = [
        "| file | protocol | label | hit@5 | nDCG@10 | MRR@10 | dense weight |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    comps = [
        "| file | protocol | comparison | nDCG@10 diff | 95% CI | hit@5 diff | 95% CI |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for f in sorted(results.glob("*.json")):
        data = json.loads(f.read_text())
        for proto, part in (data.get("protocols") or {}).items():
            weights = {k: v.get("alpha") for k, v in (part.get("hybrid") or {}).items()}
            for label, by_dim in part["metrics"].items():
                m = by_dim[max(by_dim, key=int)]
                w = weights.get(label.split("+")[0], "") if label.endswith("+hybrid") else ""
                out.append(f"| {f.name} | {proto} | {label} | {m['hit@5']:.3f} | {m['ndcg@10']:.3f} "
                           f"| {m['mrr@10']:.3f} | {w} |")
            for key, by_dim in (part.get("comparison") or {}).items():
                c = by_dim[max(by_dim, key=int)]
                n, h = c["ndcg@10"], c["hit@5"]
                comps.append(f"| {f.name} | {proto} | {key} | {n['mean_diff']:+.3f} | [{n['ci_low']:+.3f}, {n['ci_high']:+.3f}] "
                             f"| {h['mean_diff']:+.3f} | [{h['ci_low']:+.3f}, {h['ci_high']:+.3f}] |")
    return [*out, "", *comps]


def _benchmark(results: Path, name: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(file, data)`` of each result that ``eval/NAME.py`` wrote (its ``benchmark`` field)."""
    for f in sorted(results.glob("*.json")):
        data = json.loads(f.read_text())
        if data.get("benchmark") == name:
            yield f, data


def _proto(f: Path) -> str:
    try:
        return json.loads(f.read_text()).get("protocol", "")
    except (OSError, ValueError):
        return ""


def _method(cfg: dict) -> str:
    """What a training run tuned: full weights, a peft adapter (LoRA, LoRA+, (IA)3) or a query adapter."""
    lora = cfg.get("lora")
    if lora:
        if lora.get("method") == "ia3":
            return "(IA)3"
        return f"LoRA+ r={lora['rank']} ×{lora['plus_ratio']:g}" if lora.get("plus_ratio") else f"LoRA r={lora['rank']}"
    return "query adapter" if cfg.get("query_adapter") else "full"


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    print("\n".join(rows(folder)))
    print()
    print("\n".join(training_rows(folder)))
    print()
    print("\n".join(speed_rows(folder)))
    print()
    print("\n".join(server_rows(folder)))
    print()
    print("\n".join(scale_rows(folder)))
    print()
    print("\n".join(hybrid_rows(folder)))

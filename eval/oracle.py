"""The ceiling of fusing BM25 with a dense model: ``python eval/oracle.py --model DIR --out eval/results/hybrid_oracle.json``.

Per question, an oracle takes whichever of two rankings places the answer
higher: BM25 (as ragtune's index computes it) or a model's best window. No
score mix can beat it, so it bounds what any fusion of the two can reach on
the Uber set. Scored for the base model and for ``--model`` (e.g. protocol
A's tuned model) from the same evaluation ragtune's reports use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Bench, require  # noqa: E402


def oracle(first: dict, second: dict, relevant: dict, k_hit: int = 5, k_ndcg: int = 10) -> dict[str, float]:
    """hit@k and nDCG@10 (one relevant chunk per question) of the better of two rankings, per question."""
    import math

    def rank(ranking: list, rel: dict) -> int | None:
        return next((i for i, (doc, _) in enumerate(ranking) if rel.get(doc, 0) > 0), None)

    hits, gains = [], []
    for qid, rel in relevant.items():
        ranks = [r for r in (rank(first[qid], rel), rank(second[qid], rel)) if r is not None]
        best = min(ranks) if ranks else None
        hits.append(best is not None and best < k_hit)
        gains.append(1 / math.log2(best + 2) if best is not None and best < k_ndcg else 0.0)
    return {f"hit@{k_hit}": round(sum(hits) / len(hits), 4), f"ndcg@{k_ndcg}": round(sum(gains) / len(gains), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="The tuned model folder (its fitted fusion is read from it).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from ragtune.evaluation import load_llamaindex
    from ragtune.index.fusion import read_hybrid

    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    if any(sum(1 for g in rel.values() if g > 0) != 1 for rel in ds.relevant.values()):
        raise SystemExit("the oracle's nDCG assumes one relevant chunk per question")
    from ragtune.encoders.loading import model_label

    bench = Bench("oracle")
    bench.models.update(base=model_label(None), tuned=args.model)
    bench.fusions["tuned"] = read_hybrid(args.model)
    results = bench.evaluate(ds, {"base": None, "tuned": args.model}, [384], True, lexical=True)
    rankings = {label: r.rankings["384"] for label, r in results.items()}
    bench.extra["oracle"] = {
        f"{label}+long|bm25": oracle(rankings[f"{label}+long"], rankings["bm25"], ds.relevant) for label in ("base", "tuned")
    }
    for name, m in bench.extra["oracle"].items():
        print(f"  oracle {name:<16} hit@5 {m['hit@5']:.3f}  ndcg@10 {m['ndcg@10']:.3f}", flush=True)
    bench.write(args.out, ds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

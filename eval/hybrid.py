"""Hybrid retrieval against what users have without ragtune: ``python eval/hybrid.py --out eval/results/hybrid.json``.

Runs protocol A (pairs generated from the Uber PDF with the held-out split
``ragtune run`` uses, fusion weights fitted on it), T1 (the given Lyft pairs;
weights fitted on offline questions about the Lyft corpus) and G (the A model
on dbpedia-5k, its fitted weight) through ``eval/run.py --hybrid``, then writes
one JSON with each protocol's labels ``bm25``, ``base``, ``tuned``,
``base+long``, ``tuned+long``, ``base+hybrid``, ``tuned+hybrid`` and their
paired bootstrap comparisons. Exits with ``SKIPPED:`` when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from common import require  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--protocols", default="A,T1,G", help="comma-separated, in order (G reuses A's model)")
    ap.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides for A and T1.")
    ap.add_argument("--generate", default="", metavar="ARGS",
                    help="extra eval/run.py arguments for A, one string: --generate='--negatives 1 --negatives-from bm25'")
    args = ap.parse_args(argv)
    require("tenk", "uber_val_pairs.json")
    parts = {}
    t0 = time.perf_counter()
    for protocol in args.protocols.split(","):
        part = args.out.with_name(f"{args.out.stem}_{protocol.lower()}.json")
        common = ["--out", str(part), "--workdir", str(args.workdir), "--hybrid"]
        if protocol == "A":
            extra = ["--val-fraction", "0.15", "--dims", "384", *shlex.split(args.generate),
                     *(["--train", *args.train] if args.train else [])]
        elif protocol == "T1":
            extra = ["--no-anchor", "--dims", "384", *(["--train", *args.train] if args.train else [])]
        else:
            extra = ["--model", str(args.workdir / "a_model")]
        code = run.main([protocol, *common, *extra])
        if code:
            return code
        parts[protocol] = json.loads(part.read_text())
    from ragtune._io import write_json

    write_json(args.out, {"protocols": parts, "total_s": round(time.perf_counter() - t0, 2),
                          "command": "python " + " ".join(sys.argv)})
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

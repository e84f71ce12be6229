"""``python -m ragtune_server``: ``ragtune serve`` plus the batching and limit knobs.

The load script (``eval/load_server.py``) starts the server this way, in its
own process, so the load generator does not share a GIL with the server.
"""

from __future__ import annotations

import argparse
import os
import sys

from ragtune.errors import RagtuneError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ragtune_server", description=__doc__)
    p.add_argument(
        "--model", "-m", default="default", help="model folder, hub id, or 'default' (bundled)"
    )
    p.add_argument(
        "--model-name", help="name responses and /v1/models use (default: --model as given)"
    )
    p.add_argument("--qdrant", help="Qdrant folder or URL for /v1/search (optional)")
    p.add_argument("--collection", "-c", default="ragtune")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("RAGTUNE_API_KEY"))
    p.add_argument("--qdrant-api-key", default=os.environ.get("QDRANT_API_KEY"))
    p.add_argument("--device", help="torch device (default: CUDA when present)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: one per core)")
    p.add_argument("--max-inputs", type=int, default=256, help="inputs per request")
    p.add_argument("--max-input-chars", type=int, default=32_000, help="characters per input")
    p.add_argument("--max-batch-size", type=int, default=64, help="texts per merged model call")
    p.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="how long a request waits for others to join"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from ragtune_server import BatchConfig, Limits, serve

    try:
        serve(
            model=args.model,
            qdrant=args.qdrant,
            collection=args.collection,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            qdrant_api_key=args.qdrant_api_key,
            model_name=args.model_name,
            limits=Limits(max_inputs=args.max_inputs, max_input_chars=args.max_input_chars),
            batching=BatchConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms),
            device=args.device,
            threads=args.threads,
            log_level=args.log_level,
        )
    except RagtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Load test of ragtune's HTTP server: requests/s and latency at 1, 8 and 32 concurrent clients.

    python eval/load_server.py --out /tmp/load.json [--model default] [--requests 200]
        [--backend onnx [--backend-file F]] [--infinity PATH/TO/infinity_emb]

``--infinity`` measures infinity-emb's torch engine serving the same folder
after ragtune, same load, same client (the anchor; install it in its own
virtual environment: its pins are not ragtune's). Both servers' vectors are
compared with the model's own ``encode`` (min cosine over 32 texts).

Starts ``python -m ragtune_server`` in its own process on 127.0.0.1 (loopback
only; an API key is set, so auth is part of what is measured), waits for
/health, then for each variant (``single``: one short sentence a request;
``batch``: ``--batch-size`` sentences a request) and each concurrency level
sends a bounded number of /v1/embeddings requests from that many concurrent
clients (asyncio + httpx in this process). Reports requests/s, texts/s,
p50/p95/p99 latency, and how many model calls the server's micro-batcher
made for those requests (from /v1/status), plus machine info. The client shares
the machine with the server, so on a small machine the numbers are a lower
bound on what the server does alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ragtune import console
from ragtune._io import write_json
from ragtune.machine import machine_info, package_versions

HOST = "127.0.0.1"

SUBJECTS = [
    "The night tram",
    "A monthly pass",
    "The Eastfield depot",
    "Line 4",
    "The harbour ferry",
    "A student card",
]
VERBS = ["leaves", "costs", "opens", "stops at", "connects", "is valid at"]
OBJECTS = [
    "Quay Street",
    "Lighthouse Point",
    "the old market",
    "platform 3",
    "the park-and-ride",
    "the university",
]


def sentence(i: int) -> str:
    """A short, distinct sentence (so no two requests are identical)."""
    clock = f"{6 + i % 17}:{i % 60:02d}"
    return f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]} at {clock}."


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """An OpenAI-compatible embeddings server to start and load: the command and what to expect of it."""

    name: str
    cmd: list[str]
    #: ragtune's /v1/status reports its micro-batcher's counters; other servers report none
    batching_stats: bool = True
    env: dict[str, str] = field(default_factory=dict)


def ragtune_server(args: argparse.Namespace, port: int, key: str) -> Server:
    cmd = [
        sys.executable, "-m", "ragtune_server", "--model", args.model, "--model-name", "ragtune",
        "--host", HOST, "--port", str(port), "--api-key", key, "--log-level", "warning",
        "--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size),
    ]
    if args.device:
        cmd += ["--device", args.device]
    if args.server_threads:
        cmd += ["--threads", str(args.server_threads)]
    if args.backend and args.backend != "torch":
        cmd += ["--backend", args.backend]
        if args.backend_file:
            cmd += ["--backend-file", str(args.backend_file)]
    name = "ragtune" + (f" ({args.backend}{', ' + Path(args.backend_file).name if args.backend_file else ''})"
                        if args.backend and args.backend != "torch" else " (torch)")
    return Server(name, cmd)


LEGACY_TYPES = {  # sentence-transformers >= 6 module classes → the 3.x names infinity-emb's pin loads
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Dense": "sentence_transformers.models.Dense",
    "Normalize": "sentence_transformers.models.Normalize",
}


def legacy_folder(model: str, dst: Path) -> Path:
    """``model`` as sentence-transformers 3.x lays a folder out (same weights, linked), for the anchor.

    infinity-emb pins sentence-transformers 3.4, which cannot import the module paths 6.x writes
    into modules.json. Only the four module kinds ragtune's models use are translated; any other
    module stops the benchmark rather than being dropped silently.
    """
    import json

    from ragtune.encoders.loading import load_model, resolve_model

    src = Path(resolve_model(None if model == "default" else model))
    if dst.exists():
        import shutil

        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in ("modules.json", "sentence_bert_config.json"):
            (dst / f.name).symlink_to(f.resolve())
    modules = json.loads((src / "modules.json").read_text())
    for m in modules:
        kind = m["type"].rsplit(".", 1)[-1]
        if kind not in LEGACY_TYPES:
            raise SystemExit(f"{src}: module {m['type']} has no sentence-transformers 3.x equivalent for the anchor")
        m["type"] = LEGACY_TYPES[kind]
        if not m["path"]:
            continue
        (dst / m["path"]).mkdir()
        conf = json.loads((src / m["path"] / "config.json").read_text()) if (src / m["path"] / "config.json").exists() else {}
        if kind == "Pooling":
            conf = {"word_embedding_dimension": conf["embedding_dimension"],
                    f"pooling_mode_{conf['pooling_mode']}_tokens" if conf["pooling_mode"] != "cls" else "pooling_mode_cls_token": True}
        elif kind == "Dense":
            conf = {k: conf[k] for k in ("in_features", "out_features", "bias", "activation_function")}
            (dst / m["path"] / "model.safetensors").symlink_to((src / m["path"] / "model.safetensors").resolve())
        (dst / m["path"] / "config.json").write_text(json.dumps(conf))
    (dst / "modules.json").write_text(json.dumps(modules))
    max_len = int(load_model(str(src)).max_seq_length)
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len, "do_lower_case": False}))
    return dst


def infinity_server(exe: str, model: str, port: int, key: str, folder: Path) -> Server:
    """infinity-emb's torch engine on the CPU serving ``model`` (as a 3.x folder) under /v1, its defaults otherwise."""
    cmd = [
        exe, "v2", "--model-id", str(legacy_folder(model, folder)),
        "--served-model-name", "ragtune", "--engine", "torch", "--device", "cpu",
        "--host", HOST, "--port", str(port), "--api-key", key, "--url-prefix", "/v1", "--log-level", "warning",
    ]
    return Server("infinity-emb (torch)", cmd, batching_stats=False, env={"INFINITY_ANONYMOUS_USAGE_STATS": "0"})


def start_server(server: Server) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **server.env)
    return subprocess.Popen(server.cmd, env=env)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/health", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f}s")


async def run_level(
    url: str, key: str, concurrency: int, requests: int, batch: int, offset: int, stats: bool = True
) -> dict[str, Any]:
    """``requests`` embedding requests from ``concurrency`` clients: latencies and wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    next_i = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300, limits=limits
    ) as client:

        async def worker() -> None:
            nonlocal next_i
            while next_i < requests:
                i = next_i
                next_i += 1
                texts = [sentence(offset + i * batch + j) for j in range(batch)]
                body = {"input": texts[0] if batch == 1 else texts, "model": "ragtune"}
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/embeddings", json=body)
                    ok = r.status_code == 200 and len(r.json()["data"]) == batch
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                latencies.append(time.perf_counter() - t0)

        before = (await client.get("/v1/status")).json()["batching"] if stats else None
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        after = (await client.get("/v1/status")).json()["batching"] if stats else None
    lat_ms = np.asarray(latencies) * 1000
    calls = after["model_calls"] - before["model_calls"] if stats else None
    served = after["requests"] - before["requests"] if stats else None
    return {
        "concurrency": concurrency,
        "texts_per_request": batch,
        "requests": requests,
        "ok": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "texts_per_s": round(len(latencies) * batch / wall, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(lat_ms, 50)), 2),
            "p95": round(float(np.percentile(lat_ms, 95)), 2),
            "p99": round(float(np.percentile(lat_ms, 99)), 2),
            "mean": round(float(lat_ms.mean()), 2),
        }
        if len(lat_ms)
        else None,
        "model_calls": calls,
        "requests_per_model_call": round(served / calls, 2) if calls and served else None,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    cols = ["req/s", "texts/s", "p50 ms", "p95 ms", "p99 ms", "req/call"]
    head = f"{'variant':<8} {'clients':>7} " + " ".join(f"{c:>8}" for c in cols) + f" {'errors':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        lat = r["latency_ms"] or {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        variant = "single" if r["texts_per_request"] == 1 else f"batch{r['texts_per_request']}"
        print(
            f"{variant:<8} {r['concurrency']:>7} "
            f"{r['requests_per_s']:>8.1f} {r['texts_per_s']:>8.1f} "
            f"{lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['p99']:>8.1f} "
            f"{(r['requests_per_model_call'] or 0):>8.2f} {r['errors']:>6}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", default="default", help="model folder or 'default' (bundled all-MiniLM-L6-v2)"
    )
    p.add_argument("--backend", default="torch", help="ragtune server's backend: torch, onnx or openvino")
    p.add_argument("--backend-file", help="the exported file (default: the int8 one when present)")
    p.add_argument("--infinity", help="infinity_emb executable: also measure infinity-emb on the same folder")
    p.add_argument(
        "--requests", type=int, default=200, help="requests per (variant, concurrency) level"
    )
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    p.add_argument(
        "--batch-size", type=int, default=16, help="texts per request in the batch variant"
    )
    p.add_argument("--variants", default="single,batch", help="single, batch or both")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="the server's batching window")
    p.add_argument(
        "--max-batch-size", type=int, default=64, help="the server's texts per merged model call"
    )
    p.add_argument("--device", help="torch device for the server")
    p.add_argument(
        "--server-threads",
        type=int,
        help="the server's torch threads (default: torch's, one per core)",
    )
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    p.add_argument("--startup-timeout", type=float, default=300)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.requests < 1 or args.batch_size < 1:
        p.error("--requests and --batch-size must be at least 1")
    return args


def reference_vectors(args: argparse.Namespace, texts: list[str]) -> np.ndarray:
    """What the served folder's own ``encode`` gives (the form the ragtune server runs)."""
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model

    model = load_model(
        None if args.model == "default" else args.model,
        backend=args.backend or "torch", file=args.backend_file,
    )
    return Encoder(model).encode_documents(texts)


def served_vectors(url: str, key: str, texts: list[str]) -> np.ndarray:
    r = httpx.post(f"{url}/v1/embeddings", json={"input": texts, "model": "ragtune"},
                   headers={"Authorization": f"Bearer {key}"}, timeout=120)
    r.raise_for_status()
    v = np.asarray([d["embedding"] for d in sorted(r.json()["data"], key=lambda d: d["index"])], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def bench(server: Server, url: str, key: str, args: argparse.Namespace, reference: np.ndarray | None) -> dict[str, Any]:
    """Start ``server``, load it level by level, stop it; its results and how its vectors compare."""
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    print(f"{server.name}: starting", flush=True)
    proc = start_server(server)
    try:
        t0 = time.perf_counter()
        health = wait_ready(proc, url, args.startup_timeout)
        startup_s = time.perf_counter() - t0
        min_cos = None
        if reference is not None:
            got = served_vectors(url, key, [sentence(50_000_000 + i) for i in range(len(reference))])
            min_cos = round(float((got * reference).sum(axis=1).min()), 6)
        asyncio.run(run_level(url, key, 4, args.warmup, 1, 10_000_000, server.batching_stats))
        results = []
        offset = 0
        for variant in variants:
            batch = 1 if variant == "single" else args.batch_size
            for c in levels:
                res = asyncio.run(run_level(url, key, c, args.requests, batch, offset, server.batching_stats))
                offset += args.requests * batch
                res["variant"] = variant
                results.append(res)
                p95 = res["latency_ms"]["p95"] if res["latency_ms"] else "-"
                print(f"  {variant} x{c}: {res['requests_per_s']} req/s, p95 {p95} ms", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "name": server.name,
        "command": " ".join(server.cmd).replace(key, "KEY"),
        "model": health.get("model", args.model),
        "startup_s": round(startup_s, 1),
        "min_cosine_to_encode": min_cos,
        "results": results,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    console.setup()  # this process loads the model too (reference vectors): no third-party bars
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in ("single", "batch") for v in variants) or any(c < 1 for c in levels):
        raise SystemExit("--variants takes single,batch; --concurrency positive integers")
    info = machine_info() | {"versions": package_versions()}
    reference = reference_vectors(args, [sentence(50_000_000 + i) for i in range(32)])
    servers = []
    for make in [lambda port, key: ragtune_server(args, port, key)] + (
        [lambda port, key: infinity_server(args.infinity, args.model, port, key, Path(tempfile.mkdtemp()) / "model")]
        if args.infinity else []
    ):
        key = secrets.token_urlsafe(16)
        port = free_port()
        servers.append(bench(make(port, key), f"http://{HOST}:{port}", key, args, reference))
    report = {
        "settings": {
            "max_wait_ms": args.max_wait_ms,
            "max_batch_size": args.max_batch_size,
            "torch_threads": args.server_threads or "default",
            "backend": args.backend,
            "backend_file": args.backend_file,
        },
        "machine": info,
        "requests_per_level": args.requests,
        "servers": servers,
        "note": "client and server share this machine's CPUs: "
        "the numbers are a lower bound on the server alone; min_cosine_to_encode compares each "
        "server's vectors with the folder's own encode (ragtune: the backend it serves)",
    }
    print()
    print(f"{info.get('cpus_usable')} CPUs, {info.get('cpu_model', '?')}, cuda={info.get('cuda')}")
    for srv in servers:
        print(f"{srv['name']}  (min cosine to encode: {srv['min_cosine_to_encode']})")
        print_table(srv["results"])
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()

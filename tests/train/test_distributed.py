"""Data-parallel training: the passage-grouped sampler shards without overlap under accelerate,
and a 2-process gloo ``torchrun`` of ``ragtune train`` finishes with one loadable model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _dataset(positives):
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"q{i}" for i in range(len(positives))], "positive": positives})


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_gets_disjoint_passages(world):
    from accelerate.data_loader import BatchSamplerShard

    from ragtune.train.passage_batches import PassageGroupedBatchSampler

    # 23 passages, 1-3 questions each, 4 passages per batch: 6 batches, not a multiple of 4 or 3 ranks
    positives = [f"p{i}" for i in range(23) for _ in range(1 + i % 3)]
    ds = _dataset(positives)
    sampler = PassageGroupedBatchSampler(ds, batch_size=4, drop_last=False, world_size=world)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen: list[set[str]] = []
        steps = []
        for rank in range(world):
            shard = BatchSamplerShard(sampler, num_processes=world, process_index=rank, split_batches=False)
            batches = list(shard)
            steps.append(len(batches))
            assert len(shard) == len(batches)
            passages = [positives[i] for b in batches for i in b]
            seen.append(set(passages))
            for b in batches:  # each batch keeps all questions of its passages
                for p in {positives[i] for i in b}:
                    assert sum(positives[i] == p for i in b) == positives.count(p)
        assert len(set(steps)) == 1 and steps[0] > 0  # the same number of steps on every rank
        for a in range(world):
            for b in range(a + 1, world):
                assert not seen[a] & seen[b]  # disjoint
        covered = set().union(*seen)
        assert len(covered) >= 23 - 4 * (world - 1)  # at most world-1 batches left out per epoch


def test_torchrun_two_processes_gloo_train(tmp_path, tiny_pairs, model_path):
    from ragtune.pairs import save_pairs

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    ragtune = shutil.which("ragtune", path=str(Path(sys.executable).parent))
    if not torchrun or not ragtune:
        pytest.skip("torchrun / ragtune executables not found beside the interpreter")
    pairs = tmp_path / "pairs.jsonl"
    save_pairs(pairs, tiny_pairs)
    out = tmp_path / "model"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", ragtune, "train", str(pairs),
         "--out", str(out), "--base", model_path, "--max-steps", "2", "--batch-size", "4",
         "--max-seq-length", "64", "--epochs", "1"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 2 steps") == 1  # rank 0 alone reports and writes
    # one progress display: rank 0's (a slow machine may add heartbeat lines to it, never a second start)
    assert proc.stderr.count("Training steps (2 steps) ...") == 1
    from sentence_transformers import SentenceTransformer

    vec = SentenceTransformer(str(out)).encode(["tram depot"])
    assert vec.shape == (1, 384)
    assert not list(tmp_path.glob("model.checkpoints*"))  # rank 0 cleaned up its checkpoints

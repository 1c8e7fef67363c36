"""DistributedDataParallel for real at small size: two gloo CPU processes under torchrun train
the same model as one process with twice the batch, and end with the same weights, also when
the sample weights differ across users, so that the ranks' shares of the weight differ (the
trainer normalizes every objective by the global batch's weight sum)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from fm_core.checkpoint import load_checkpoint
from fm_core.model import FoundationModel

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from fm_core.model import FMConfig
    from fm_core.train_fm import TrainConfig, dist_env, train_fm
    from fm_core.types import History, ItemCatalog

    torch.set_num_threads(1)
    out, batch_size = sys.argv[1], int(sys.argv[2])
    n, t0 = 20, 1.75e9
    genres = np.zeros((n, 4), dtype=bool)
    genres[np.arange(n), np.arange(n) % 4] = True
    catalog = ItemCatalog(np.arange(n), genres, np.full(n, t0 - 60 * 86400.0))
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n, size=16)
    # Users of different lengths, watch times and sample weights (some 0): the windows of a
    # step hold different numbers of targets and very different weight sums on each rank.
    # With max_len 16 and stride 8 these lengths make 46 windows: an even count, so that the
    # DistributedSampler pads none and both runs see the same windows.
    lengths = [30, 27, 28, 39, 20, 35, 31, 12, 23, 36, 28, 12, 34, 33, 36, 16]
    sequences = [
        (History(item_ids=(s + np.arange(m)) % n, times=t0 + 3600.0 * np.arange(m),
                 kinds=np.array(["play"] * m, dtype=object),
                 values=rng.uniform(60.0, 7200.0, size=m),
                 sources=np.array(["rec"] * m, dtype=object)),
         rng.choice([0.0, 0.5, 1.0, 4.0, 10.0], size=m))
        for s, m in zip(starts, lengths)
    ]
    cfg = FMConfig(d_model=32, n_heads=2, max_len=16, dropout=0.0, id_dropout=0.0,
                   n_future=2).with_catalog(catalog)
    train = TrainConfig(epochs=2, batch_size=batch_size, lr=3e-3, stride=8, progress=False,
                        checkpoint_path=out)
    result = train_fm(sequences, catalog, cfg, train)
    print(f"rank {dist_env().rank} loss {result.metrics[-1].loss:.6f}")
    """
)


def _run(args: list[str], cwd: Path) -> str:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_two_gloo_processes_match_one_process_with_twice_the_batch(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([sys.executable, str(script), str(one), "8"], tmp_path)
    out = _run(
        [str(torchrun), "--standalone", "--nproc-per-node=2", str(script), str(two), "4"],
        tmp_path,
    )
    assert "rank 0" in out and "rank 1" in out
    one_process, one_meta = load_checkpoint(one)
    two_processes, two_meta = load_checkpoint(two)
    assert one_meta["epoch"] == two_meta["epoch"] == 1
    # Per-rank normalization (the ranks' own Σw) misses these by two orders of magnitude:
    # a loss gap of ~7e-3 and weight gaps of ~3e-2.
    assert abs(one_meta["loss"] - two_meta["loss"]) < 1e-5
    one_weights = parameters_to_vector(one_process.parameters())
    two_weights = parameters_to_vector(two_processes.parameters())
    # Adam divides by √v, so gradients near zero turn summation-order noise into ~1e-5 steps.
    torch.testing.assert_close(two_weights, one_weights, rtol=0.0, atol=1e-4)
    torch.manual_seed(0)  # the worker's seed: the weights both runs started from
    start = parameters_to_vector(FoundationModel(one_process.cfg).parameters())
    assert (one_weights - start).norm() > 100 * (two_weights - one_weights).norm()
    assert not (tmp_path / "two.pt.tmp").exists()

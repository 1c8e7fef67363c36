"""DistributedDataParallel for real at small size: two gloo CPU processes under torchrun train
the same model as one process with twice the batch, and end with the same weights."""

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
    starts = np.random.default_rng(0).integers(0, n, size=16)
    # 40 plays per user: with max_len 16 and stride 8, every window holds 16 equal targets,
    # so each rank's self-normalized loss has the same total weight as the others'.
    sequences = [
        (History(item_ids=(s + np.arange(40)) % n, times=t0 + 3600.0 * np.arange(40),
                 kinds=np.array(["play"] * 40, dtype=object), values=np.full(40, 1200.0),
                 sources=np.array(["rec"] * 40, dtype=object)), None)
        for s in starts
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
    assert abs(one_meta["loss"] - two_meta["loss"]) < 1e-4
    one_weights = parameters_to_vector(one_process.parameters())
    two_weights = parameters_to_vector(two_processes.parameters())
    # Adam divides by √v, so gradients near zero turn summation-order noise into ~1e-5 steps.
    torch.testing.assert_close(two_weights, one_weights, rtol=1e-3, atol=1e-4)
    torch.manual_seed(0)  # the worker's seed: the weights both runs started from
    start = parameters_to_vector(FoundationModel(one_process.cfg).parameters())
    assert (one_weights - start).norm() > 100 * (two_weights - one_weights).norm()
    assert not (tmp_path / "two.pt.tmp").exists()

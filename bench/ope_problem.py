"""The synthetic logged problem of the OPE benchmarks (``bench.ope``, ``bench.ope_spark``): n
decisions over 10 actions, softmax logging and target policies, binary rewards and a noisy
reward model, in obp's dense view and in the per-row OPE input contract."""

from __future__ import annotations

import numpy as np

N_ACTIONS = 10


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_problem(n: int, seed: int) -> dict[str, np.ndarray]:
    """Dense and per-row views of one synthetic logged problem."""
    rng = np.random.default_rng(seed)
    logging_policy = _softmax(rng.normal(size=(n, N_ACTIONS)))
    target = _softmax(rng.normal(scale=1.5, size=(n, N_ACTIONS)))
    expected = rng.uniform(0.05, 0.4, size=(n, N_ACTIONS))
    u = rng.random(n)[:, None]
    action = np.minimum((logging_policy.cumsum(axis=1) < u).sum(axis=1), N_ACTIONS - 1)
    rows = np.arange(n)
    reward = (rng.random(n) < expected[rows, action]).astype(np.float64)
    q = np.clip(expected + rng.normal(scale=0.05, size=(n, N_ACTIONS)), 0.0, 1.0)
    return {
        "action": action,
        "reward": reward,
        "pscore": logging_policy[rows, action],
        "target_pscore": target[rows, action],
        "q_hat": q[rows, action],
        "v_hat": (target * q).sum(axis=1),
        "action_dist": target[:, :, None],
        "q_dense": q[:, :, None],
    }

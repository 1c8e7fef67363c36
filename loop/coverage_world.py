"""Logged runs in the simulated world with an exactly known target value, for interval coverage.

The world, a pool of requests and each request's candidates are fixed (drawn once from
``CoverageWorldConfig.seed``). The target is ε-greedy over fixed scores, the world's play logit
plus Gaussian noise (a decent but imperfect model). Its true value on a request is exact
(``World.policy_value`` of its marginals), and its true value on the pool is their mean.

Each run (a fresh seed) draws ``decisions`` requests from the pool with replacement, so its
decisions are i.i.d. from a distribution whose target value is exactly that mean. Each decision
shows a uniformly random ordered slate of ``k`` of its candidates (the logging policy: ε-greedy
with ε = 1, exact propensities), and the world responds (``World.respond``: examination, intent,
plays); the reward of a position is whether it was played. The world's state is never updated
(``World.record`` is not called), so the truth stays exact across runs.

Every OPE column is filled: the logged marginal, prefix and slate propensities, the target's
(``ope.replay``), and a cross-fitted logistic reward model (``ope.reward_model``) over the
target score and the position, grouped by decision.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from explore import EpsilonGreedySlate
from loop.coverage_config import CoverageWorldConfig
from ope import OpeBatch
from ope.coverage import LoggedRun
from ope.refit import RewardModelInputs
from ope.replay import replay_slate
from ope.reward_model import Classifier, cross_fit
from sim import World, WorldConfig


class CoverageWorld:
    """The fixed world, request pool and target; ``run(seed)`` gives one logged run."""

    def __init__(self, config: CoverageWorldConfig | None = None) -> None:
        self.config = c = config or CoverageWorldConfig()
        self.world = World(WorldConfig(seed=c.seed, n_items=c.n_items, n_users=c.n_users))
        rng = np.random.default_rng([c.seed, 1])
        self.requests = self.world.sample_requests(c.pool_requests, start=0.0, end=c.days, rng=rng)
        self.target = EpsilonGreedySlate(epsilon=c.target_epsilon, name="target")
        self.candidates = np.stack(
            [
                rng.choice(self.world.available(r.t), c.candidates, replace=False)
                for r in self.requests
            ]
        )  # (R, C) item ids
        noise = rng.normal(scale=c.score_noise, size=self.candidates.shape)
        self.scores = (
            np.stack(
                [
                    self.world.affinity(r, items)
                    for r, items in zip(self.requests, self.candidates, strict=True)
                ]
            )
            + noise
        )  # (R, C)
        self.target_marginals = np.stack(
            [self.target.marginals(s, c.k) for s in self.scores]
        )  # (R, K, C)
        values = [
            self.world.policy_value(r, items, m)
            for r, items, m in zip(
                self.requests, self.candidates, self.target_marginals, strict=True
            )
        ]
        self.truth = float(np.mean(values))

    def run(self, seed: int) -> LoggedRun:
        """One logged run of ``decisions`` uniform-logging decisions drawn from the pool."""
        c = self.config
        rng = np.random.default_rng([c.seed, 2, seed])
        picks = rng.integers(c.pool_requests, size=c.decisions)
        k, n_cand = c.k, c.candidates
        slates = np.argsort(rng.random((c.decisions, n_cand)), axis=1)[:, :k]  # uniform, ordered
        reward = np.zeros((c.decisions, k))
        target = {name: np.zeros((c.decisions, k)) for name in ("marginal", "item", "prefix")}
        for i, (pick, slate) in enumerate(zip(picks, slates, strict=True)):
            request = self.requests[pick]
            outcome = self.world.respond(request, self.candidates[pick][slate], rng)
            reward[i] = outcome.played
            replayed = replay_slate(self.target, self.scores[pick], slate)
            target["marginal"][i], target["item"][i] = replayed.marginal, replayed.item
            target["prefix"][i] = replayed.prefix
        logged_prefix = np.cumprod(1.0 / (n_cand - np.arange(k, dtype=np.float64)))
        inputs = self._reward_model_inputs(picks, slates)
        fit = cross_fit(
            inputs.design, reward=reward.ravel(), action=inputs.action, target=inputs.target,
            model=inputs.model, n_folds=inputs.n_folds, seed=seed,
            groups=np.repeat(np.arange(c.decisions), k),  # the positions of a slate share a fold
        )  # fmt: skip
        batch = OpeBatch.from_arrays(
            reward=reward.ravel(),
            pscore=np.full(reward.size, 1.0 / n_cand),
            target_pscore=target["marginal"].ravel(),
            decision_id=np.repeat(np.arange(c.decisions), k),
            slot=np.tile(np.arange(k), c.decisions),
            q_hat=fit.q_hat,
            v_hat=fit.v_hat,
            slate_pscores={
                "pscore_slate": np.full(reward.size, logged_prefix[-1]),
                "target_pscore_slate": np.repeat(target["prefix"][:, -1], k),
                "pscore_cascade": np.tile(logged_prefix, c.decisions),
                "target_pscore_cascade": target["prefix"].ravel(),
                "target_pscore_item": target["item"].ravel(),
            },
        )
        return LoggedRun(batch=batch, truth=self.truth, reward_model=inputs)

    def runs(self, reps: int, *, first_seed: int = 0) -> Iterator[LoggedRun]:
        """``reps`` runs with seeds first_seed, first_seed + 1, ..."""
        for r in range(reps):
            yield self.run(first_seed + r)

    def _reward_model_inputs(self, picks: np.ndarray, slates: np.ndarray) -> RewardModelInputs:
        """The reward model over one row per (decision, position): features of a candidate are
        its target score and the position; the target at a row is the target's marginal over
        the candidates at that position."""
        n, k = slates.shape
        position = np.tile(np.arange(k), n)
        request = np.repeat(picks, k)
        slot_features = np.eye(k)

        def design(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
            score = self.scores[request[rows], actions]
            return np.column_stack([score, slot_features[position[rows]]])

        return RewardModelInputs(
            design=design,
            action=slates.ravel(),
            target=self.target_marginals[request, position],  # (n·K, C)
            model=_fast_logistic,
            n_folds=3,
        )


def _fast_logistic() -> Classifier:
    """L2 logistic regression by liblinear: a few times faster than lbfgs on these few features,
    which matters over hundreds of runs."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="liblinear")

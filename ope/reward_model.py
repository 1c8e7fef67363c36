"""Cross-fitted reward models for DM and the doubly robust estimators.

q̂(x, a) is fitted on K − 1 folds of the logged rows and predicted on the held-out fold, so no
row's q̂ has seen its own reward (Chernozhukov et al. 2018's cross-fitting, as obp's
``RegressionModel.fit_predict(n_folds=K)``). Per row i the output is what the estimators take:
``q_hat[i] = q̂(x_i, a_i)`` and ``v_hat[i] = Σ_a π_e(a | x_i) q̂(x_i, a)``.

The model is pluggable: ``"logistic"`` (scikit-learn's L2 logistic regression) and ``"gbdt"``
(scikit-learn's histogram gradient boosting) are built in by name, and any factory of an object
with scikit-learn's ``fit(X, y)`` / ``predict_proba(X)`` works. The fm_core ranker's network
(``fm_core.reward_classifier.RankerRewardModel``) is one: ``loop.ope_targets.reward_model_for``
maps the name "ranker" to its factory and passes that here as ``model``, so ``ope`` itself never
imports torch or fm_core. Rewards are binary here. A training fold
with a single class (clicks are rare: tens per 10,000 rows in the Open Bandit Dataset) gets the
fold's smoothed click rate, (clicks + 1) / (rows + 2), instead of a model that cannot be fitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REWARD_MODELS = ("logistic", "gbdt")


class Classifier(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray) -> Any: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


Design = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(rows (m,), actions (m,)) → features (m, f) of the contexts of those rows with those actions."""


def make_classifier(model: str | Callable[[], Classifier], seed: int) -> Classifier:
    if callable(model):
        return model()
    if model == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=2000)
    if model == "gbdt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    raise ValueError(f"model must be one of {', '.join(REWARD_MODELS)} or a factory; got {model!r}")


@dataclass(frozen=True)
class CrossFit:
    """Per logged row: q̂ at the logged action, q̂ averaged over the target policy, its fold."""

    q_hat: np.ndarray
    v_hat: np.ndarray
    fold: np.ndarray
    constant_folds: int


def _fit_predict(
    model: str | Callable[[], Classifier],
    seed: int,
    X: np.ndarray,
    y: np.ndarray,
) -> Callable[[np.ndarray], np.ndarray]:
    if y.min() == y.max():
        rate = (y.sum() + 1.0) / (y.size + 2.0)
        return lambda features: np.full(features.shape[0], rate)
    classifier = make_classifier(model, seed)
    classifier.fit(X, y)
    return lambda features: classifier.predict_proba(features)[:, 1]


def _group_folds(groups: np.ndarray, n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) a random fold per group, as even as the groups allow."""
    if groups.shape != (n,):
        raise ValueError(f"groups must have {n} rows like reward; got shape {groups.shape}")
    codes, uniques = pd.factorize(groups)
    if n_folds > len(uniques):
        raise ValueError(f"n_folds must be at most the {len(uniques)} groups; got {n_folds}")
    return rng.permutation(np.arange(len(uniques)) % n_folds)[codes]


@dataclass(frozen=True)
class FoldModels:
    """A reward model cross-fitted on logged rows: one classifier per fold, each fitted on the
    other folds. ``predict(rows, actions)`` scores any action at a logged row with the model that
    never saw that row's fold, so DM, DR and v̂ for any target use out-of-fold predictions."""

    design: Design
    fold: np.ndarray
    predictors: tuple[Callable[[np.ndarray], np.ndarray], ...]
    q_hat: np.ndarray
    constant_folds: int

    def predict(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(m,) q̂ of ``actions`` at logged ``rows``, each by its row's out-of-fold model."""
        rows = np.asarray(rows, dtype=np.int64)
        actions = np.asarray(actions, dtype=np.int64)
        out = np.empty(rows.size)
        folds = self.fold[rows]
        for k, predict in enumerate(self.predictors):
            mine = folds == k
            if mine.any():
                out[mine] = predict(self.design(rows[mine], actions[mine]))
        return out

    def expected(self, target: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """(n,) Σ_a target[i, a] q̂(x_i, a) at every logged row i: v̂ for a target whose
        probabilities over the row's actions are ``target`` (n, n_actions); the action of column
        a is ``actions[i, a]`` when given (−1 where the row has fewer), else a itself."""
        n = self.fold.size
        if target.ndim != 2 or target.shape[0] != n:
            raise ValueError(f"target must be (n_rows={n}, n_actions); got shape {target.shape}")
        rows, columns = np.nonzero(target > 0)
        chosen = columns if actions is None else actions[rows, columns]
        q = self.predict(rows, chosen)
        return np.bincount(rows, weights=target[rows, columns] * q, minlength=n)


def fit_folds(
    design: Design,
    *,
    reward: np.ndarray,
    action: np.ndarray,
    model: str | Callable[[], Classifier] = "logistic",
    n_folds: int = 3,
    seed: int = 0,
    groups: np.ndarray | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> FoldModels:
    """Cross-fit the reward model: fold k's classifier is fitted on the other folds (and on
    ``extra``, rows outside the evaluated data: their features and rewards).

    Args:
        design: features of (rows, actions).
        reward: (n,) binary rewards. action: (n,) the logged action of each row, as ``design``
            takes it.
        model: "logistic", "gbdt", or a factory of a scikit-learn-style classifier.
        n_folds: K ≥ 2 folds, assigned at random with ``seed``.
        groups: (n,) optional; rows with the same group share a fold (the positions of one
            slate, or a bootstrap replicate's copies of one decision), so no row's q̂ has seen
            a row of its own group. None: every row is its own group.
        extra: optional (features (m, f), rewards (m,)) of rows every fold trains on, such as
            an earlier log: they are not evaluated, so they cannot leak a row's own reward.
    """
    reward = np.asarray(reward, dtype=np.float64)
    action = np.asarray(action, dtype=np.int64)
    n = reward.size
    if action.shape != (n,):
        raise ValueError(f"action must have {n} rows like reward; got shape {action.shape}")
    extra_x, extra_y = (None, np.empty(0)) if extra is None else extra
    if not np.all(np.isin(np.concatenate([reward, extra_y]), (0.0, 1.0))):
        raise ValueError("reward must be binary (0 or 1) for the built-in reward models")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be an int in [2, n_rows]; got {n_folds!r}")
    rng = np.random.default_rng(seed)
    if groups is None:
        fold = rng.permutation(np.arange(n) % n_folds)
    else:
        fold = _group_folds(np.asarray(groups), n, n_folds, rng)
    rows = np.arange(n)
    predictors = []
    constant = 0
    for k in range(n_folds):
        train = rows[fold != k]
        X, y = design(train, action[train]), reward[train]
        if extra_x is not None:
            X, y = np.vstack([X, extra_x]), np.concatenate([y, extra_y])
        constant += int(y.min() == y.max())
        predictors.append(_fit_predict(model, seed, X, y))
    if constant:
        logger.warning(
            "%d of %d folds had a single reward class; used their rate", constant, n_folds
        )
    fitted = FoldModels(
        design=design, fold=fold, predictors=tuple(predictors), q_hat=np.empty(0),
        constant_folds=constant,
    )  # fmt: skip
    return replace(fitted, q_hat=fitted.predict(rows, action))


def cross_fit(
    design: Design,
    *,
    reward: np.ndarray,
    action: np.ndarray,
    target: np.ndarray,
    model: str | Callable[[], Classifier] = "logistic",
    n_folds: int = 3,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> CrossFit:
    """Cross-fitted q_hat and v_hat (``fit_folds``, then v̂ over ``target``).

    Args:
        design: features of (rows, actions).
        reward: (n,) binary rewards. action: (n,) logged action indices.
        target: (n, n_actions) the target policy's probabilities at each row's context.
        model, n_folds, seed, groups: as ``fit_folds``.
    """
    reward = np.asarray(reward, dtype=np.float64)
    action = np.asarray(action, dtype=np.int64)
    n = reward.size
    if action.shape != (n,):
        raise ValueError(f"action must have {n} rows like reward; got shape {action.shape}")
    if target.ndim != 2 or target.shape[0] != n:
        raise ValueError(f"target must be (n_rows={n}, n_actions); got shape {target.shape}")
    n_actions = target.shape[1]
    if action.size and (action.min() < 0 or action.max() >= n_actions):
        raise ValueError(f"action must be in [0, {n_actions}); got {action.min()}..{action.max()}")
    fitted = fit_folds(
        design, reward=reward, action=action, model=model, n_folds=n_folds, seed=seed,
        groups=groups,
    )  # fmt: skip
    return CrossFit(
        q_hat=fitted.q_hat,
        v_hat=fitted.expected(target),
        fold=fitted.fold,
        constant_folds=fitted.constant_folds,
    )

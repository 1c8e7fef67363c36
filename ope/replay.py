"""Policy replay: the target policy's probabilities of each logged slate, for the OPE columns.

Given a logged decision's candidates, the new model's scores on those candidates, and an
exploration policy, replay gives for the logged slate s = (s_1, ..., s_K):

- ``marginal`` (K,): P_target(s_k at position k), the ``target_pscore`` of item-position IPS;
- ``item`` (K,): P_target(s_k anywhere in the first K positions), the ``target_pscore_item`` of
  the pseudo-inverse estimator (``ope.pseudo_inverse``);
- ``prefix`` (K,): P_target(s_1..s_k), the ``target_pscore_cascade`` of reward-interaction IPS;
  its last entry is the whole slate's probability, ``target_pscore_slate`` of standard slate IPS;
- ``marginals`` (K, n): the target's marginals over every candidate, for the support diagnostic
  (``ope.support``).

``prefix_conditionals`` gives, for each logged position k, the target's conditional choice
π_e(a at k | logged s_1..s_{k−1}) over the candidates it could put there: what the cascade
doubly robust estimator (``ope.cascade_dr``) averages its reward model over.

The policy is anything with ``marginals(scores, k) -> (k, n)`` and
``slate_probability(scores, slate) -> float`` (the ``explore`` Policy interface); ``ope`` needs
only those two methods and never imports ``explore``. The prefix probability of s_1..s_k is the
policy's ``slate_probability`` of that shorter slate, which is right for policies that fill
positions in order (sequential samplers, ε-greedy with a pool of at least K). Replay checks the
one relation it can: the one-item prefix must equal the position-0 marginal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class HasMarginals(Protocol):
    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray: ...


class ReplayPolicy(Protocol):
    """What replay needs of a policy: its exact marginals and slate probabilities."""

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray: ...

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float: ...


class PrefixError(ValueError):
    """The policy's slate probabilities depend on the slate's length, so the probability of a
    shorter slate is not the prefix probability of a longer one."""


@dataclass(frozen=True)
class ReplayedSlate:
    """The target's probabilities of one logged slate (see the module docstring); ``prefix`` is
    None where the policy's prefixes are not known (``replay_slate(require_prefix=False)``)."""

    marginal: np.ndarray
    item: np.ndarray
    prefix: np.ndarray | None
    marginals: np.ndarray
    slate: float
    """P_target(the whole logged slate)."""


def _slate_index(slate_candidate_index: object) -> np.ndarray:
    index = np.asarray(slate_candidate_index, dtype=np.int64)
    if index.ndim != 1 or index.size == 0:
        raise ValueError(f"the logged slate must be a non-empty 1-D index; got shape {index.shape}")
    if index.min() < 0:
        raise ValueError(
            f"the logged slate names a candidate the decision did not have (index {index.min()})"
        )
    return index


def _scored_slate(scores: object, slate_candidate_index: object) -> tuple[np.ndarray, np.ndarray]:
    """The scores as floats and the logged slate's candidate index, checked against each other."""
    scores = np.asarray(scores, dtype=np.float64)
    index = _slate_index(slate_candidate_index)
    if index.max() >= scores.size:
        raise ValueError(
            f"the logged slate names candidate {index.max()} of only {scores.size} scores"
        )
    return scores, index


def target_marginals(
    policy: HasMarginals,
    scores: np.ndarray,
    slate_candidate_index: np.ndarray,
) -> np.ndarray:
    """(K,) P_target(logged candidate at its logged position), for one logged decision.

    Args:
        scores: (n,) the target model's scores on the logged candidates.
        slate_candidate_index: (K,) index into the candidates of the item logged at each position.
    """
    slate_candidate_index = np.asarray(slate_candidate_index, dtype=np.int64)
    k = slate_candidate_index.size
    marginals = policy.marginals(np.asarray(scores, dtype=np.float64), k)
    positions = np.arange(min(k, marginals.shape[0]))
    out = np.zeros(k)
    out[positions] = marginals[positions, slate_candidate_index[positions]]
    return out


def replay_slate(
    policy: ReplayPolicy,
    scores: np.ndarray,
    slate_candidate_index: object,
    *,
    require_prefix: bool = True,
) -> ReplayedSlate:
    """The target's probabilities of one logged slate.

    Args:
        policy: the target's exploration policy.
        scores: (n,) the target model's scores on the logged candidates.
        slate_candidate_index: (K,) index into the candidates of the item logged at each position.
        require_prefix: raise ``PrefixError`` when the policy's prefix probabilities are not
            known (a random insertion's depend on the slate's length); False leaves ``prefix``
            None and keeps the marginals and the whole slate's probability, which are exact.
    """
    scores, index = _scored_slate(scores, slate_candidate_index)
    k = index.size
    marginals = np.asarray(policy.marginals(scores, k), dtype=np.float64)
    rows = min(k, marginals.shape[0])
    positions = np.arange(rows)
    marginal = np.zeros(k)
    marginal[positions] = marginals[positions, index[positions]]
    item = np.minimum(marginals[:rows].sum(axis=0)[index], 1.0)  # a sum: may round past 1
    prefix = np.array([policy.slate_probability(scores, index[: j + 1]) for j in range(k)])
    if abs(prefix[0] - marginal[0]) > 1e-9:
        if not require_prefix:
            return ReplayedSlate(
                marginal=marginal, item=item, prefix=None, marginals=marginals,
                slate=float(prefix[-1]),
            )  # fmt: skip
        raise PrefixError(
            f"the policy's probability of the one-item prefix ({prefix[0]}) differs from its "
            f"position-0 marginal ({marginal[0]}): its slate probabilities depend on the slate "
            "length, so they do not give the prefix probabilities of a longer slate"
        )
    return ReplayedSlate(
        marginal=marginal, item=item, prefix=prefix, marginals=marginals, slate=float(prefix[-1])
    )


CONDITIONAL_TOLERANCE = 1e-9
"""How far from 1 a position's conditionals may sum before replay says the policy's slate
probabilities are not prefix probabilities."""


def prefix_conditionals(
    policy: ReplayPolicy, scores: np.ndarray, slate_candidate_index: object
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each logged position k: (candidates a, π_e(a at k | logged s_1..s_{k−1})).

    Exact, from the policy's own probabilities: the conditional is the ratio of prefix
    probabilities P(s_1..s_{k−1}, a) / P(s_1..s_{k−1}), over the candidates in the support of the
    target's position-k marginal that are not in the prefix (any candidate the target can put at
    k after this prefix is there). A policy with ``prefix_extensions(scores, prefix)`` (every
    P(prefix, a) at once, e.g. ``explore.EpsilonGreedySlate``) is asked once per position. A
    position whose logged prefix has target probability 0 gets an empty pair: its prefix weight
    is 0, so nothing is averaged there.

    Args:
        policy: the target's exploration policy.
        scores: (n,) the target model's scores on the logged candidates.
        slate_candidate_index: (K,) index into the candidates of the item logged at each position.

    Raises:
        ValueError: when a position's conditionals do not sum to 1 (the policy's slate
            probabilities of shorter slates are not its prefix probabilities).
    """
    scores, index = _scored_slate(scores, slate_candidate_index)
    k = index.size
    marginals = np.asarray(policy.marginals(scores, k), dtype=np.float64)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for position in range(k):
        prefix = index[:position]
        shown = 1.0 if position == 0 else policy.slate_probability(scores, prefix)
        if position >= marginals.shape[0] or shown <= 0.0:
            out.append((np.empty(0, dtype=np.int64), np.empty(0)))
            continue
        support = np.flatnonzero(marginals[position] > 0.0)
        support = support[~np.isin(support, prefix)]
        extensions = getattr(policy, "prefix_extensions", None)
        if extensions is not None:  # every one-longer slate at once
            joint = np.asarray(extensions(scores, prefix), dtype=np.float64)[support]
        else:
            joint = np.array(
                [policy.slate_probability(scores, np.append(prefix, a)) for a in support]
            )
        conditional = joint / shown
        total = float(conditional.sum())
        if abs(total - 1.0) > CONDITIONAL_TOLERANCE:
            raise ValueError(
                f"the policy's conditionals at position {position} sum to {total}, not 1: its "
                "slate probabilities of shorter slates are not prefix probabilities"
            )
        out.append((support, conditional))
    return out

"""Behaviour on the search surface and on a title's "more like this" row.

Both are anchored on one title a: the member's intent on a search (the title whose words the
query was typed from), the opened title on a title page. For an examined item i,

- search:  P(play) = ``intent_play`` if i = a, else σ(logit(u, i, x) + λ_s · cos(z_a, z_i) − φ);
- title:   P(play) = σ(logit(u, i, x) + λ_t · cos(z_a, z_i)) for i ≠ a, σ(logit(u, a, x)) for
  the opened title itself (its own row does not lift it),

times ``reconsumption`` for a title the member played before, with logit(u, i, x) the home
affinity (``World.affinity``), z the titles' true latent vectors and λ_s, λ_t
``WorldConfig.search_similarity`` and ``title_similarity``, and φ ``search_focus`` (a member who
searched for one title rarely settles for an unrelated one). Plays at different positions do not
interact, so a slate's expected reward is Σ_k θ_k r(x, s_k) as on home, with
r(x, i) = P(play | examined) · E[reward | play]; the best slate is the top K by r.

The anchor of a search request (``Request.intent``) is ground truth the serving side never sees:
it sees the query only. Plays on these slates come from a served decision, so they have
``source="rec"`` like home's, and carry their decision and position.
"""

from __future__ import annotations

import numpy as np

SURFACES_WITH_ANCHOR: tuple[str, ...] = ("search", "title")


def latent_cosine(latent: np.ndarray, anchor: int, items: np.ndarray) -> np.ndarray:
    """cos(z_anchor, z_i) for each of ``items`` (rows of ``latent``)."""
    unit = latent / (np.linalg.norm(latent, axis=1, keepdims=True) + 1e-12)
    return unit[np.asarray(items, dtype=np.int64)] @ unit[anchor]


def anchored_play_probability(
    *,
    surface: str,
    anchor: int,
    items: np.ndarray,
    affinity: np.ndarray,
    reconsumption: np.ndarray,
    latent: np.ndarray,
    similarity_weight: float,
    intent_play: float,
    search_focus: float,
) -> np.ndarray:
    """P(play | examined) of ``items`` on a ``surface`` of SURFACES_WITH_ANCHOR (see the module
    docstring); ``affinity`` and ``reconsumption`` are the home terms of the same items."""
    if surface not in SURFACES_WITH_ANCHOR:
        raise ValueError(f"surface must be one of {SURFACES_WITH_ANCHOR}; got {surface!r}")
    items = np.asarray(items, dtype=np.int64)
    lift = np.where(items == anchor, 0.0, similarity_weight * latent_cosine(latent, anchor, items))
    if surface == "search":
        lift = lift - search_focus
    p = 1.0 / (1.0 + np.exp(-(affinity + lift)))
    if surface == "search":
        p = np.where(items == anchor, intent_play, p)
    return p * reconsumption

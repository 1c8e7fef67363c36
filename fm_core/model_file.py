"""Loading whichever scorer a model file holds, by the ``kind`` in its ``meta`` entry (the format
itself is ``fm_core.model_archive``). It imports torch only to load an FM + ranker file, so
serving the baseline starts without it."""

from __future__ import annotations

from pathlib import Path

from fm_core.baseline import PopularityAffinityScorer
from fm_core.model_archive import BASELINE_KIND, FM_RANKER_KIND, open_model_file
from fm_core.scorer import Scorer


def model_kind(path: str | Path) -> str:
    """The ``kind`` recorded in a model file ("popularity_affinity" or "fm_ranker")."""
    with open_model_file(path) as model:
        return str(model.meta.get("kind"))


def load_scorer_file(path: str | Path) -> Scorer:
    """Open a model file of either kind: the baseline or the FM + ranker."""
    kind = model_kind(path)
    if kind == FM_RANKER_KIND:
        from fm_core.fm_scorer import FMRankerScorer  # imports torch

        return FMRankerScorer.load(path)
    if kind == BASELINE_KIND:
        return PopularityAffinityScorer.load(path)
    raise ValueError(f"{path} holds a model of unknown kind {kind!r}")

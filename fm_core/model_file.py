"""Model files (.npz with a JSON ``meta`` entry naming their ``kind``): opening one, reading
its kind, and loading whichever scorer it holds. It imports torch only to load an FM + ranker
file, so serving the baseline starts without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fm_core.baseline import PopularityAffinityScorer
from fm_core.scorer import Scorer

FM_RANKER_KIND = "fm_ranker"
BASELINE_KIND = "popularity_affinity"


class ModelArchive:
    """An opened .npz model file with its ``meta`` entry checked."""

    def __init__(self, path: str | Path) -> None:
        try:
            archive = np.load(Path(path), allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"{path} is not a loopbreak model file: {error}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile) or "meta" not in archive.files:
            raise ValueError(f"{path} is not a loopbreak model file: no meta entry")
        self.archive = archive

    def __enter__(self) -> np.lib.npyio.NpzFile:
        return self.archive

    def __exit__(self, *exc: object) -> None:
        self.archive.close()


def open_model_file(path: str | Path) -> ModelArchive:
    """A context manager giving the file's arrays; raises ValueError naming a file that is not
    a loopbreak model."""
    return ModelArchive(path)


def model_kind(path: str | Path) -> str:
    """The ``kind`` recorded in a model file ("popularity_affinity" or "fm_ranker")."""
    with open_model_file(path) as data:
        return str(json.loads(str(data["meta"])).get("kind"))


def load_scorer_file(path: str | Path) -> Scorer:
    """Open a model file of either kind: the baseline or the FM + ranker."""
    kind = model_kind(path)
    if kind == FM_RANKER_KIND:
        from fm_core.fm_scorer import FMRankerScorer

        return FMRankerScorer.load(path)
    if kind == BASELINE_KIND:
        return PopularityAffinityScorer.load(path)
    raise ValueError(f"{path} holds a model of unknown kind {kind!r}")

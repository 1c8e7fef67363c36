"""Calibration per surface: one ranker's logits mapped to probabilities by a calibrator of the
request's surface.

Home, search and title pages play at very different rates (a searched title is played far more
often than a home row's fifth item), so one map from logits to probabilities fitted on all of
them is off on each. ``fit_surface_calibrators`` fits ``fm_core.calibration.fit_calibrator`` on
the held-out rows of each surface that has at least ``min_plays`` plays and ``min_plays``
non-plays there; other surfaces use the calibrator fitted on every surface's rows (the pooled
one, the scorer's ``calibrator``). ``calibrate`` applies them to the rows of each surface.
It imports numpy only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from fm_core.calibration import Calibrator, fit_calibrator

logger = logging.getLogger(__name__)

MIN_SURFACE_PLAYS = 30


def fit_surface_calibrators(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    surfaces: np.ndarray,
    *,
    method: str = "auto",
    min_plays: int = MIN_SURFACE_PLAYS,
) -> dict[str, Calibrator]:
    """A calibrator per surface of ``surfaces`` (one name per row) with enough plays and
    non-plays among the rows; the others are left out (they take the pooled calibrator)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    surfaces = np.asarray(surfaces, dtype=object)
    if surfaces.shape != logits.shape or labels.shape != logits.shape:
        raise ValueError(
            f"surfaces and labels must have one value per logit ({logits.size}); got "
            f"{surfaces.shape} and {labels.shape}"
        )
    if min_plays < 1:
        raise ValueError(f"min_plays must be >= 1; got {min_plays}")
    out: dict[str, Calibrator] = {}
    for surface in sorted({str(s) for s in surfaces}):
        rows = surfaces == surface
        plays = float(labels[rows].sum())
        if plays < min_plays or rows.sum() - plays < min_plays:
            logger.info("surface %s: %d plays, the pooled calibrator serves it", surface, plays)
            continue
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[rows]
        out[surface] = fit_calibrator(logits[rows], labels[rows], w, method=method)
    return out


def calibrate(
    logits: np.ndarray,
    surfaces: np.ndarray,
    pooled: Calibrator,
    by_surface: Mapping[str, Calibrator],
) -> np.ndarray:
    """Probabilities of ``logits``, each row by its surface's calibrator, else ``pooled``."""
    logits = np.asarray(logits, dtype=np.float64)
    surfaces = np.asarray(surfaces, dtype=object)
    if surfaces.shape != logits.shape:
        raise ValueError(
            f"surfaces must have one name per logit ({logits.shape}); got {surfaces.shape}"
        )
    out = pooled.predict(logits)
    for surface, calibrator in by_surface.items():
        rows = surfaces == surface
        if rows.any():
            out[rows] = calibrator.predict(logits[rows])
    return out


def calibrators_to_dict(by_surface: Mapping[str, Calibrator]) -> dict[str, dict[str, object]]:
    """JSON-ready parameters of each surface's calibrator."""
    return {surface: c.to_dict() for surface, c in by_surface.items()}


def calibrators_from_dict(params: Mapping[str, dict[str, object]]) -> dict[str, Calibrator]:
    """The calibrators ``calibrators_to_dict`` wrote."""
    return {str(surface): Calibrator.from_dict(p) for surface, p in params.items()}

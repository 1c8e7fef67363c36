"""Calibration per surface (fm_core.surface_calibration): each surface with enough plays gets
its own map from logits to probabilities, the others the pooled one."""

from __future__ import annotations

import numpy as np
import pytest

from fm_core.calibration import Calibrator, fit_calibrator
from fm_core.surface_calibration import (
    calibrate,
    calibrators_from_dict,
    calibrators_to_dict,
    fit_surface_calibrators,
)


def rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One logit scale, two surfaces that play at rates 1 logit apart, and a rare one."""
    rng = np.random.default_rng(seed)
    surfaces = rng.choice(["home", "search", "title"], size=20000, p=[0.4975, 0.4975, 0.005])
    logits = rng.normal(-2.0, 1.0, size=surfaces.size)
    shift = np.where(surfaces == "search", 1.5, np.where(surfaces == "home", -0.5, 0.0))
    labels = (rng.random(surfaces.size) < 1 / (1 + np.exp(-(logits + shift)))).astype(float)
    return logits, labels, surfaces.astype(object)


def test_each_surface_is_calibrated_on_its_own_rows() -> None:
    logits, labels, surfaces = rows()
    by_surface = fit_surface_calibrators(
        logits, labels, None, surfaces, method="temperature", min_plays=30
    )
    assert set(by_surface) == {"home", "search"}  # the rare title rows have too few plays
    pooled = fit_calibrator(logits, labels, method="temperature")
    per_surface = calibrate(logits, surfaces, pooled, by_surface)
    for surface in ("home", "search"):
        on = surfaces == surface
        own_gap = abs(per_surface[on].mean() - labels[on].mean())
        pooled_gap = abs(pooled.predict(logits[on]).mean() - labels[on].mean())
        assert own_gap < 0.005 < pooled_gap
    title = surfaces == "title"
    np.testing.assert_array_equal(per_surface[title], pooled.predict(logits[title]))


def test_surface_calibrators_survive_a_round_trip() -> None:
    logits, labels, surfaces = rows(1)
    by_surface = fit_surface_calibrators(logits, labels, None, surfaces, method="isotonic")
    again = calibrators_from_dict(calibrators_to_dict(by_surface))
    pooled = Calibrator()
    np.testing.assert_array_equal(
        calibrate(logits, surfaces, pooled, again), calibrate(logits, surfaces, pooled, by_surface)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"surfaces": np.array(["home"], dtype=object)}, "surfaces and labels must have one"),
        ({"labels": np.zeros(3)}, "surfaces and labels must have one"),
        ({"min_plays": 0}, "min_plays must be >= 1"),
    ],
)
def test_bad_calibration_input_is_refused_by_name(kwargs: dict, message: str) -> None:
    given = {
        "logits": np.zeros(4),
        "labels": np.array([0.0, 1.0, 0.0, 1.0]),
        "weights": None,
        "surfaces": np.array(["home"] * 4, dtype=object),
        **kwargs,
    }
    min_plays = given.pop("min_plays", 1)
    with pytest.raises(ValueError, match=message):
        fit_surface_calibrators(
            given["logits"], given["labels"], given["weights"], given["surfaces"],
            min_plays=min_plays,
        )  # fmt: skip
    with pytest.raises(ValueError, match="surfaces must have one name per logit"):
        calibrate(np.zeros(3), np.array(["home"], dtype=object), Calibrator(), {})

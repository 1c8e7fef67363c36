"""``loopbreak bench surfaces`` at toy size, and its measures against hand-made truths: NDCG@10
with true gains, the calibration error against true probabilities, and paired intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.surfaces_eval import calibration_error, ndcg_at, paired_interval, ranking
from cli.main import main


def test_ndcg_is_one_for_the_true_order_and_lower_for_another() -> None:
    gains = np.array([0.1, 0.7, 0.0, 0.3])
    assert ndcg_at(gains, gains, 10) == pytest.approx(1.0)
    reversed_order = ndcg_at(-gains, gains, 2)
    assert reversed_order == pytest.approx((0.0 + 0.1 / np.log2(3)) / (0.7 + 0.3 / np.log2(3)))
    assert ndcg_at(np.ones(3), np.zeros(3), 10) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        ndcg_at(np.ones(2), np.ones(3), 10)


def test_ranking_breaks_ties_by_item_id() -> None:
    np.testing.assert_array_equal(ranking(np.array([0.5, 0.9, 0.5]), np.array([9, 4, 2])),
                                  [4, 2, 9])  # fmt: skip


def test_calibration_error_is_zero_for_the_truth_and_the_gap_for_a_shift() -> None:
    truth = np.linspace(0.01, 0.5, 200)
    assert calibration_error(truth, truth) == pytest.approx(0.0)
    assert calibration_error(truth + 0.05, truth) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="same shape"):
        calibration_error(truth, truth[:-1])


def test_paired_interval_covers_the_mean_with_students_t() -> None:
    out = paired_interval([0.1, 0.3])
    assert out["mean"] == pytest.approx(0.2)
    sd = np.std([0.1, 0.3], ddof=1)
    assert out["hi"] - out["mean"] == pytest.approx(12.706 * sd / np.sqrt(2), rel=1e-3)
    assert paired_interval([0.1]) == {"mean": 0.1, "lo": None, "hi": None}


@pytest.mark.slow
def test_the_command_reports_every_surface_for_both_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "surfaces", "--seeds", "2", "--items", "120", "--users", "60",
            "--decisions", "120", "--eval", "20", "--fm-epochs", "1", "--epochs", "1",
            "--cap", "40", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert "unified - specialist" in "\n".join(out[:-1])
    assert len(result["per_seed"]) == 2
    for surface in ("home", "search", "title"):
        summary = result["summary"][surface]
        for measure in ("ndcg10", "recall_best10", "calibration_error"):
            m = summary["metrics"][measure]
            assert 0.0 <= m["unified"] <= 1.0 and 0.0 <= m["specialist"] <= 1.0
            d = m["difference"]
            assert d["lo"] <= d["mean"] <= d["hi"]
            assert d["mean"] == pytest.approx(m["unified"] - m["specialist"])
        for seed in result["per_seed"]:
            logged = seed["logged"][surface]
            assert logged["decisions"] == 120 and logged["propensities_exact"]
    top3 = result["summary"]["search"]["top3"]
    assert sum(top3["unified"][kind]["n"] for kind in top3["unified"]) == 40
    assert top3["bm25"]["exact"]["rate"] >= 0.9  # an exact title is found by its words
    assert main(["bench", "surfaces", "--epsilon", "2", "--seeds", "1"]) != 0

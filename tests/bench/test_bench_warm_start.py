"""``loopbreak bench warm_start`` at toy size: the previous version's catalog lacks the newest
titles and its histories stop halfway, both runs train the same epochs, and the command ends
with one JSON object whose figures are consistent with each other."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.fm_data import simulate_sequences
from bench.warm_start import _previous_data
from cli.main import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_previous_version_lacks_the_newest_titles_and_the_latest_plays() -> None:
    data = simulate_sequences(n_users=40, n_items=50, seed=1)
    previous = _previous_data(data, 0.2)
    assert previous.catalog.n_items == 40
    dropped = np.setdiff1d(data.catalog.item_ids, previous.catalog.item_ids)
    kept_release = data.catalog.release_time[np.isin(data.catalog.item_ids, dropped, invert=True)]
    assert data.catalog.release_time[dropped].min() >= kept_release.max()
    for whole, part in zip(data.histories, previous.histories, strict=True):
        assert len(part) <= len(whole) // 2 + 1
        assert np.isin(part.item_ids, previous.catalog.item_ids).all()


def test_the_command_reports_both_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "warm_start", "--users", "60", "--items", "40", "--epochs", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["previous_items"] == 32 and result["items"] == 40
    for name in ("cold", "warm"):
        run = result[name]
        assert len(run["valid_ndcg_by_epoch"]) == 2
        assert run["best_valid_ndcg"] == max(run["valid_ndcg_by_epoch"])
        assert run["alignment"]["shared_items"] == 32
    assert result["warm"]["warm_start"] == {"kept": 32, "added": 8}
    reached = result["warm_epochs_to_cold_best"]
    assert reached is None or 1 <= reached <= 2

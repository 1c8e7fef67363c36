"""The retraining job (``loop.retrain``, ``loopbreak retrain``): the window and its held-out cut,
the training table's options in the registry, idempotent reruns, one run at a time, and the exit
codes of bad input and of nothing to learn."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sim_decisions import uniform_log
from sqlmodel import Session

from cli.main import main
from fm_core import PopularityAffinityScorer
from loop.retrain import NothingToLearnError, retrain, training_window
from loop.sim_bridge import catalog_from_world
from proplog.engine import init_db, make_engine
from proplog.job_lock import JobLockedError, job_lock
from proplog.schema import ModelVersion
from sim import World, WorldConfig


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """200 uniformly logged decisions over five days, and a model file carrying the catalog."""
    out = tmp_path_factory.mktemp("retrain")
    url = f"sqlite:///{out / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=4, n_items=50, n_users=60))
    uniform_log(world, engine, n=200, k=4, seed=2)
    engine.dispose()
    catalog = PopularityAffinityScorer(catalog_from_world(world), model_version="catalog")
    return url, catalog.save(out / "catalog.npz")


def registered(url: str, version: str) -> ModelVersion | None:
    engine = make_engine(url)
    with Session(engine) as session:
        row = session.get(ModelVersion, version)
    engine.dispose()
    return row


def test_the_held_out_tail_is_the_latest_share_of_the_windows_decisions(
    logged: tuple[str, Path],
) -> None:
    engine = make_engine(logged[0])
    whole = training_window(engine, holdout_share=0.25)
    assert whole.held_out == 50 and whole.first < whole.last < whole.cut
    since = datetime(2026, 1, 2, tzinfo=UTC)
    part = training_window(engine, since=since, holdout_share=0.0)
    assert part.held_out == 0 and part.first >= since and part.cut > part.last
    with pytest.raises(NothingToLearnError, match="holds no decisions"):
        training_window(engine, since=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"holdout_share must be in \[0, 1\)"):
        training_window(engine, holdout_share=1.0)
    with pytest.raises(ValueError, match="since must be before until"):
        training_window(engine, since=since, until=since)
    engine.dispose()


def test_a_run_registers_its_window_and_weights_and_a_rerun_does_nothing(
    logged: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, catalog = logged
    argv = ["retrain", "--db", url, "--out", str(tmp_path / "m.npz"), "--catalog-from",
            str(catalog), "--version", "job-1", "--alpha", "2", "--clip", "5",
            "--negatives", "examined", "--holdout-share", "0.3"]  # fmt: skip
    assert main(argv) == 0
    assert "model job-1 (registered): 140 decisions" in capsys.readouterr().out
    row = registered(url, "job-1")
    assert row is not None and row.path and Path(row.path).exists()
    window = row.params["training_window"]
    assert window["held_out_decisions"] == 60 and window["last"] < window["cut"]
    assert row.params["training_table"]["search_weight"] == 2.0
    assert row.params["training_table"]["clip_max"] == 5.0
    assert row.params["training_table"]["negatives"] == "examined"
    assert main(argv) == 0  # the same version for the same window: already done
    assert "already registered for this window" in capsys.readouterr().out
    other = [*argv[:-1], "0.2"]  # the same version name for another window is refused
    assert main(other) == 2
    assert "already registered with another training window" in capsys.readouterr().err


def test_a_second_run_while_one_holds_the_lock_exits_3(
    logged: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, catalog = logged
    engine = make_engine(url)
    with job_lock(engine, "retrain"):
        with pytest.raises(JobLockedError), job_lock(make_engine(url), "retrain"):
            pass
        code = main(["retrain", "--db", url, "--out", str(tmp_path / "m.npz"),
                     "--catalog-from", str(catalog)])  # fmt: skip
    assert code == 3 and "holds the lock" in capsys.readouterr().out
    assert not (tmp_path / "m.npz").exists()
    with job_lock(engine, "retrain"):  # released when the holder's block ends
        pass
    engine.dispose()


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--since", "2030-01-01"], 4, "the window holds no decisions"),
        (["--since", "soon"], 2, "--since must be an ISO date"),
        (["--holdout-share", "1"], 2, "holdout_share must be in [0, 1)"),
        (["--clip", "0.5"], 2, "clip_max must be a number >= 1"),
        (["--alpha", "-1"], 2, "search_weight must be a finite number >= 0"),
        (["--catalog-from", "nowhere.npz"], 2, "--catalog-from nowhere.npz does not exist"),
    ],
)
def test_bad_input_and_an_empty_window_are_named_and_write_nothing(
    logged: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    code: int,
    message: str,
) -> None:
    url, catalog = logged
    out = tmp_path / "m.npz"
    argv = ["retrain", "--db", url, "--out", str(out), "--catalog-from", str(catalog),
            "--version", "never", *options]  # fmt: skip
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert not out.exists() and registered(url, "never") is None


def test_the_job_in_python_returns_what_it_registered(
    logged: tuple[str, Path], tmp_path: Path
) -> None:
    url, catalog_file = logged
    from fm_core import load_scorer_file

    engine = make_engine(url)
    result = retrain(
        engine=engine, catalog=load_scorer_file(catalog_file).catalog,
        out=tmp_path / "p.npz", version="py-1", holdout_share=0.5,
    )  # fmt: skip
    engine.dispose()
    assert result.created and result.decisions == 100 and result.path.exists()

"""``loopbreak export``: a simulated log to Parquet by day (read back equal to the in-memory
export, and estimated by ``ope estimate`` on either engine), to obp's arrays and to VW text;
bad options are refused naming the option, with nothing written."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_decisions import uniform_log
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import T0, decision_payload

from cli.main import main
from proplog.engine import init_db, make_engine
from proplog.export import export_frame, read_parquet_export
from proplog.store import record_decisions
from sim import World, WorldConfig


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A uniform-random log of 80 decisions over five days of the simulated world."""
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    uniform_log(World(WorldConfig(seed=7, n_items=120, n_users=60)), engine, n=80, k=3, seed=2)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def engine(log_url: str) -> Engine:
    return make_engine(log_url)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def test_parquet_days_hold_the_export_one_file_a_day(
    log_url: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "days"
    code, lines, _ = run(
        ["export", "--database", log_url, "--out", str(out), "--chunk-decisions", "7", "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads(lines[-1])
    files = sorted(out.glob("day=*/part-0.parquet"))
    assert [f.parent.name for f in files] == [f"day={d}" for d in result["days"]]
    assert len(files) > 1
    whole = export_frame(session_or_engine=engine)
    back = pd.concat([read_parquet_export(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(back, whole)
    assert result["rows"] == len(whole)
    assert result["decisions"] == whole["decision_id"].nunique()
    for file in files:
        day = file.parent.name.removeprefix("day=")
        assert (read_parquet_export(file)["created_at"].dt.strftime("%Y-%m-%d") == day).all()
    assert not list(tmp_path.glob(".*partial"))


def test_the_exported_days_estimate_alike_on_both_engines(
    log_url: str, spark: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "days"
    assert run(["export", "--database", log_url, "--out", str(out)], capsys)[0] == 0
    code, _, err = run(["ope", "estimate", "--input", str(out), "--engine", "spark"], capsys)
    assert code == 2 and "lacks the required column(s) target_pscore" in err
    for file in out.glob("day=*/part-0.parquet"):  # an analyst's target: half the logged one
        frame = pd.read_parquet(file)
        frame = frame.drop(columns=["pscore_slate", "pscore_cascade"])
        frame.assign(target_pscore=frame["pscore"] / 2).to_parquet(file, index=False)
    answers = []
    for engine in ("in-process", "spark"):
        code, lines, err = run(
            ["ope", "estimate", "--input", str(out / "day=*"), "--engine", engine, "--json",
             "--interval", "bootstrap", "--bootstrap", "30"],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        answers.append(json.loads(lines[-1])["estimates"])
    assert answers[0].keys() == answers[1].keys()
    for name, numbers in answers[0].items():
        for key, value in numbers.items():
            assert answers[1][name][key] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_vw_text_and_a_log_obp_cannot_hold(
    log_url: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vw = tmp_path / "log.vw"
    code, lines, _ = run(
        ["export", "--database", log_url, "--format", "vw", "--out", str(vw), "--json"], capsys
    )
    assert code == 0
    decisions = export_frame(session_or_engine=engine)["decision_id"].nunique()
    assert json.loads(lines[-1])["examples"] == decisions
    examples = [block for block in vw.read_text().split("\n\n") if block.strip()]
    assert len(examples) == decisions
    assert all(":" in block.splitlines()[1] or "shared" in block for block in examples)
    obp = tmp_path / "feedback.npz"
    code, _, err = run(
        ["export", "--database", log_url, "--format", "obp", "--out", str(obp)], capsys
    )  # the world's candidate sets differ between decisions: not obp's one action set
    assert code == 2 and "candidates" in err and not obp.exists()


def test_obp_arrays_of_a_log_with_one_action_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fixed.db'}"
    fixed = make_engine(url)
    init_db(fixed)
    decisions = []
    for i in range(12):
        slate = ((20, 30, 10), (40, 10, 30))[i % 2]
        d = decision_payload(decision_id=str(uuid.UUID(int=i + 1)), items=slate)
        d["created_at"] = T0 + timedelta(hours=6 * i)
        decisions.append(d)
    with Session(fixed) as session:
        record_decisions(session=session, decisions=decisions)
    out = tmp_path / "feedback.npz"
    code, _, err = run(["export", "--database", url, "--format", "obp", "--out", str(out)], capsys)
    assert code == 0, err
    with np.load(out) as arrays:
        assert int(arrays["n_rounds"]) == 36 and int(arrays["n_actions"]) == 4
        assert arrays["item_ids"].tolist() == [10, 20, 30, 40]
        np.testing.assert_array_equal(arrays["pscore"], np.tile([0.5, 0.4, 0.3], 12))
    days = tmp_path / "days"
    assert run(["export", "--database", url, "--out", str(days)], capsys)[0] == 0
    assert len(list(days.glob("day=*/part-0.parquet"))) == 4  # from noon, 6 h apart for 66 h
    fixed.dispose()


BAD_OPTIONS = [
    (
        ["--format", "parquet", "--out", "{tmp}/log.csv"],
        "--out for --format parquet must end in .parquet",
    ),
    (["--format", "obp", "--out", "{tmp}/log.pkl"], "--out for --format obp must end in .npz"),
    (["--out", "{tmp}/taken"], "already exists and is not an empty folder"),
    (["--format", "vw", "--out", "{tmp}/taken"], "is a folder; --format vw writes a file"),
    (["--out", "{tmp}/new", "--chunk-decisions", "0"], "--chunk-decisions must be >= 1"),
    (["--out", "{tmp}/new", "--since", "yesterday"], "--since must be an ISO date or time"),
    (
        ["--format", "obp", "--out", "{tmp}/x.npz", "--max-actions", "0"],
        "max_actions must be an integer >= 1",
    ),
]


@pytest.mark.parametrize(("options", "says"), BAD_OPTIONS)
def test_bad_options_are_refused_with_nothing_written(
    log_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list, says: str
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("an analyst's file")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [o.replace("{tmp}", str(tmp_path)) for o in options]
    code, _, err = run(["export", "--database", log_url, *args], capsys)
    assert code == 2
    assert says in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

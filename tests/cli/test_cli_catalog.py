"""``loopbreak catalog load FILE``: CSV and Parquet load (exit 0, the counts printed and in
``--json``), a reload reports nothing new, a bad suffix or a bad row exits 2 naming the file or
the column and row; and ``loopbreak retrain`` without ``--catalog-from`` takes the log's catalog
(exit 2 saying what to do when the log has none)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from catalog_files import small_frame, world_frame
from sim_decisions import uniform_log
from sqlmodel import Session

from cli.main import main
from fm_core import load_scorer_file
from loop.sim_bridge import catalog_from_world
from proplog.catalog import read_catalog
from proplog.engine import init_db, make_engine
from proplog.schema import ModelVersion
from sim import World, WorldConfig


@pytest.mark.parametrize(
    ("suffix", "typed"), [(".csv", False), (".parquet", False), (".parquet", True)]
)
def test_load_a_file(
    suffix: str, typed: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``typed``: the Parquet file's release_time is a timestamp column, not text."""
    path = tmp_path / f"titles{suffix}"
    frame = small_frame()
    if typed:
        frame["release_time"] = pd.to_datetime(frame["release_time"], utc=True, format="ISO8601")
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert main(["catalog", "load", str(path), "--database", url, "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "loaded 3 titles (3 new, 0 updated)"
    assert json.loads(out[1]) == {"file": str(path), "loaded": 3, "new": 3, "updated": 0}
    assert main(["catalog", "load", str(path), "--database", url]) == 0
    assert capsys.readouterr().out.strip() == "loaded 3 titles (0 new, 0 updated)"
    engine = make_engine(url)
    stored = read_catalog(engine).set_index("item_id")
    engine.dispose()
    assert stored.loc[20, "country"] == "NA" and stored.loc[20, "genres"] == ""  # not NaN
    assert stored.loc[20, "release_time"] == datetime(2021, 3, 4, 10, tzinfo=UTC)


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    text = tmp_path / "titles.txt"
    text.write_text("item_id,title\n")
    assert main(["catalog", "load", str(text), "--database", url]) == 2
    assert f"{text}: a catalog file must end in .csv or .parquet" in capsys.readouterr().err
    missing = tmp_path / "none.csv"
    assert main(["catalog", "load", str(missing), "--database", url]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    small_frame().assign(release_time=["2020-01-01", "2020-01-01", "later"]).to_csv(
        bad, index=False
    )
    assert main(["catalog", "load", str(bad), "--database", url]) == 2
    err = capsys.readouterr().err
    assert "rows[2].release_time must be an ISO date or time" in err and "nothing loaded" in err
    engine = make_engine(url)
    assert read_catalog(engine).empty
    engine.dispose()


def test_retrain_takes_the_logs_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=4, n_items=50, n_users=60))
    uniform_log(world, engine, n=200, k=4, seed=2)
    out = tmp_path / "m.npz"
    argv = ["retrain", "--db", url, "--out", str(out), "--version", "from-log"]
    assert main(argv) == 2
    assert (
        "no catalog: load one with loopbreak catalog load FILE or give --catalog-from"
        in capsys.readouterr().err
    )
    assert not out.exists()

    titles = tmp_path / "titles.csv"
    world_frame(world).to_csv(titles, index=False)
    assert main(["catalog", "load", str(titles), "--database", url]) == 0
    assert main(argv) == 0
    assert "model from-log (registered)" in capsys.readouterr().out
    catalog = load_scorer_file(out).catalog
    expected = catalog_from_world(world)
    assert catalog.item_ids.tolist() == expected.item_ids.tolist()
    assert catalog.tokens == expected.tokens
    with Session(engine) as session:
        assert session.get(ModelVersion, "from-log") is not None
    engine.dispose()

    missing = ["retrain", "--db", url, "--out", str(tmp_path / "n.npz"), "--catalog-from",
               str(tmp_path / "none.npz")]  # fmt: skip
    assert main(missing) == 2
    assert "none.npz does not exist" in capsys.readouterr().err  # as before

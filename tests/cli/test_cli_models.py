"""``loopbreak models`` on a simulated log with real gates (``loopbreak ope gate``): a candidate
fitted on the first half of the log is refused without a gate (exit 1), refused with a READY gate
whose window overlaps its training data (exit 1), promoted with a READY gate on the later half
(exit 0, the gate's id stored); rollback restores production; bad input exits 2 naming the field
and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sim_decisions import uniform_log
from sqlmodel import Session

from cli.main import main
from loop.models import history
from loop.retrain import fit_model
from loop.sim_bridge import catalog_from_world
from loop.windows import read_window, training_impressions
from proplog.engine import init_db, make_engine
from proplog.registry import record_model_version
from sim import World, WorldConfig


@pytest.fixture(scope="module")
def world_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A uniform log over 5 days; ``untrained`` (the logging model) in production; ``fitted``
    trained on the first 40% of the decisions, registered with that time as its cut."""
    out = tmp_path_factory.mktemp("models")
    url = f"sqlite:///{out / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=3, n_items=80, n_users=150))
    uniform_log(world, engine, n=2400, k=5, seed=0)
    times = read_window(engine).decisions["created_at"]
    first, cut = times.min().to_pydatetime(), times.quantile(0.4).to_pydatetime()
    fitted = fit_model(
        training_impressions(read_window(engine, until=cut)),
        catalog_from_world(world),
        model="baseline",
        version="fitted",
    ).scorer
    path = fitted.save(out / "fitted.npz")
    window = {"first": first.isoformat(), "last": cut.isoformat(), "cut": cut.isoformat()}
    with Session(engine) as session:
        record_model_version(
            session=session, version="untrained", kind="baseline", params={}, metrics={}
        )
        record_model_version(
            session=session, version="fitted", kind="baseline", path=str(path),
            params={"training_window": window}, metrics={},
        )  # fmt: skip
    assert main(["models", "promote", "untrained", "--database", url]) == 0
    engine.dispose()
    return url, cut.isoformat()


def last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_promotion_follows_the_gate_and_rollback_restores(
    world_registry: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, cut = world_registry
    db = ["--database", url]
    assert main(["models", "promote", "fitted", *db]) == 1
    assert "no ope_report for candidate fitted" in capsys.readouterr().out

    gate = ["ope", "gate", "--candidate", "fitted", "--pool", "20", "--json", *db]
    assert main([*gate, "--force"]) == 0  # READY, but on the candidate's own training data
    overlapping = last_json(capsys)
    assert overlapping["decision"] == "ready" and overlapping["baseline"] == "production"
    assert main(["models", "promote", "fitted", *db]) == 1
    assert "before the candidate's training cut" in capsys.readouterr().out

    assert main([*gate, "--since", cut]) == 0
    later = last_json(capsys)
    assert main(["models", "promote", "fitted", "--json", *db]) == 0
    promoted = last_json(capsys)
    assert promoted["version"] == "fitted" and promoted["previous"] == "untrained"
    assert promoted["gate_report_id"] == later["report_id"] and not promoted["forced"]

    assert main(["models", "list", "--json", *db]) == 0
    listed = last_json(capsys)["versions"]
    assert [(v["version"], v["production"]) for v in listed] == [  # type: ignore[index]
        ("untrained", False),
        ("fitted", True),
    ]
    assert main(["models", "rollback", "--reason", "p99 latency", "--json", *db]) == 0
    back = last_json(capsys)
    assert (back["version"], back["previous"], back["action"]) == (
        "untrained",
        "fitted",
        "rollback",
    )
    engine = make_engine(url)
    assert history(engine)[-1].reason == "p99 latency"
    engine.dispose()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "nope"], "version must be a registered model version (known: fitted, "),
        (["promote", "fitted", "--force", " "], "force_reason must be a non-empty text"),
        (["show", "nope"], "version must be a registered model version"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    world_registry: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    url, _ = world_registry
    engine = make_engine(url)
    before = len(history(engine))
    assert main(["models", *argv, "--database", url]) == 2
    assert message in capsys.readouterr().err
    assert len(history(engine)) == before
    engine.dispose()


def test_rollback_without_history_and_forced_promotion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database", f"sqlite:///{tmp_path / 'log.db'}"]
    assert main(["models", "rollback", *db]) == 2
    assert "rollback must be a production history" in capsys.readouterr().err
    engine = make_engine(db[1])
    init_db(engine)
    with Session(engine) as session:
        for version in ("a", "b"):
            record_model_version(
                session=session, version=version, kind="baseline", params={}, metrics={}
            )
    assert main(["models", "promote", "a", *db]) == 0
    assert main(["models", "promote", "b", "--force", "incident 42", *db]) == 0
    assert "forced" in capsys.readouterr().out
    row = history(engine)[-1]
    assert (row.version, row.forced, row.reason) == ("b", True, "incident 42")
    assert main(["models", "show", "b", *db]) == 0
    assert "(production)" in capsys.readouterr().out
    engine.dispose()

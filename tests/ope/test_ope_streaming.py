"""Streaming OPE: chunk-by-chunk partials merge to the in-memory estimates and intervals (the
bootstrap included), files are read in chunks that keep decisions whole, the four kinds of
interval behave as their theory says, and bad streamed input names the row in the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ope import (
    DM,
    IPS,
    SNDR,
    SNIPS,
    Bounds,
    OpeBatch,
    OpeInputError,
    estimate_all,
    estimators,
    read_batches,
    stream_estimates,
)
from ope.moments import poisson_multiplicities

RTOL = 1e-10


def slate_log(seed: int = 3, n_decisions: int = 600) -> pd.DataFrame:
    """Decisions of 1 to 6 slots (so later chunks have slots earlier ones lack), string ids,
    rewards in [0, 1], a reward model, rows of a decision contiguous."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_decisions)
    sizes[: n_decisions // 3] = np.minimum(sizes[: n_decisions // 3], 2)
    n = int(sizes.sum())
    return pd.DataFrame(
        {
            "decision_id": np.repeat([f"d{j:05d}" for j in range(n_decisions)], sizes),
            "slot": np.concatenate([np.arange(s) for s in sizes]),
            "reward": (rng.random(n) < 0.3).astype(float),
            "pscore": rng.uniform(0.05, 1.0, n),
            "target_pscore": rng.uniform(0.0, 1.0, n),
            "q_hat": rng.uniform(0.1, 0.5, n),
            "v_hat": rng.uniform(0.1, 0.5, n),
        }
    )


def chunks(frame: pd.DataFrame, sizes: list[int]) -> list[OpeBatch]:
    """Split at decision boundaries near the given row counts."""
    ids = frame["decision_id"].to_numpy()
    out, start = [], 0
    for size in [*sizes, len(frame)]:
        stop = min(start + size, len(frame))
        while 0 < stop < len(frame) and ids[stop] == ids[stop - 1]:
            stop += 1
        if stop > start:
            out.append(OpeBatch.from_frame(frame.iloc[start:stop], row_offset=start))
        start = stop
    return out


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return slate_log()


@pytest.mark.parametrize("interval", ["normal", "t", "bootstrap"])
def test_streamed_estimates_equal_in_memory_ones(log: pd.DataFrame, interval: str) -> None:
    whole = estimate_all(OpeBatch.from_frame(log), interval=interval, n_bootstrap=100, clip=5.0)
    parts = chunks(log, [137, 401, 90, 800])
    assert len(parts) >= 4
    streamed = stream_estimates(parts, estimators(clip=5.0), interval=interval, n_bootstrap=100)
    assert set(streamed) == set(whole) == {
        "ipw", "snipw", "clipped-ipw", "dm", "dr", "sndr", "dros", "switch-dr", "iips"
    }  # fmt: skip
    for name, expected in whole.items():
        got = streamed[name]
        assert got.n_decisions == expected.n_decisions
        for field in ("value", "lo", "hi"):
            assert getattr(got, field) == pytest.approx(getattr(expected, field), rel=RTOL), name
        for key, value in expected.diagnostics.items():
            assert got.diagnostics[key] == pytest.approx(value, rel=RTOL), (name, key)


def test_bernstein_streamed_equals_in_memory(log: pd.DataFrame) -> None:
    batch = OpeBatch.from_frame(log)
    linear = [e for e in estimators() if e.has_bernstein and e.supports(batch)]
    assert {e.name for e in linear} == {"ipw", "dm", "dr", "dros", "switch-dr", "iips"}
    whole = {e.name: e.estimate(batch, interval="bernstein") for e in linear}
    streamed = stream_estimates(chunks(log, [250, 250, 250]), linear, interval="bernstein")
    for name, expected in whole.items():
        assert streamed[name].lo == pytest.approx(expected.lo, rel=RTOL)
        assert streamed[name].hi == pytest.approx(expected.hi, rel=RTOL)


def test_merge_order_does_not_matter(log: pd.DataFrame) -> None:
    a, b, c = chunks(log, [300, 500])
    for estimator in (IPS(), SNDR()):
        pa, pb, pc = (estimator.partial(x, n_bootstrap=50) for x in (a, b, c))
        left = estimator.finish(pa.merge(pb).merge(pc), interval="bootstrap")
        right = estimator.finish(pc.merge(pa.merge(pb)), interval="bootstrap")
        assert left.value == pytest.approx(right.value, rel=RTOL)
        assert (left.lo, left.hi) == pytest.approx((right.lo, right.hi), rel=RTOL)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_files_are_read_in_chunks_that_keep_decisions_whole(
    log: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"log{suffix}"
    log.to_parquet(path) if suffix == ".parquet" else log.to_csv(path, index=False)
    batches = list(read_batches(path, chunk_rows=97))
    assert len(batches) > 10
    assert sum(b.n_rows for b in batches) == len(log)
    assert sum(b.n_decisions for b in batches) == log["decision_id"].nunique()
    streamed = stream_estimates(batches, estimators())
    whole = estimate_all(OpeBatch.from_frame(log))
    for name, expected in whole.items():
        assert streamed[name].value == pytest.approx(expected.value, rel=RTOL)
        assert streamed[name].hi == pytest.approx(expected.hi, rel=RTOL)


def test_rows_without_decision_ids_are_keyed_by_their_row_in_the_whole_file(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame(
        {
            "reward": rng.random(n),
            "pscore": np.full(n, 0.5),
            "target_pscore": rng.random(n),
        }
    )
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    streamed = stream_estimates(
        read_batches(path, chunk_rows=123), [IPS()], interval="bootstrap", n_bootstrap=80
    )
    whole = IPS().estimate(OpeBatch.from_frame(frame), interval="bootstrap", n_bootstrap=80)
    assert (streamed["ipw"].lo, streamed["ipw"].hi) == pytest.approx((whole.lo, whole.hi), RTOL)


# ---- bad streamed input --------------------------------------------------------------------


def test_a_bad_value_in_a_later_chunk_names_its_row_in_the_whole_file(
    log: pd.DataFrame, tmp_path: Path
) -> None:
    bad = log.copy()
    bad.loc[1234, "pscore"] = 0.0
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    with pytest.raises(OpeInputError, match=r"pscore must be in \(0, 1\]; got 0.0 at row 1234$"):
        stream_estimates(read_batches(path, chunk_rows=100), estimators())


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("log.json", "{}", r"must be a \.parquet or \.csv file"),
        ("empty.csv", "reward,pscore,target_pscore\n", "has no rows"),
        (
            "split.csv",
            "decision_id,reward,pscore,target_pscore\na,1,0.5,0.5\nb,0,0.5,0.5\na,1,0.5,0.5\n",
            r"decision_id rows must be contiguous; 'a' reappears at row 2",
        ),
        ("missing.csv", "reward,pscore\n1,0.5\n", "missing required column.*target_pscore"),
    ],
)
def test_bad_files_raise_naming_the_problem(
    tmp_path: Path, name: str, content: str, match: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(OpeInputError, match=match):
        stream_estimates(read_batches(path, chunk_rows=10), estimators())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_rows": 0}, "chunk_rows must be a positive int"),
        ({"chunk_rows": 2.5}, "chunk_rows must be a positive int"),
    ],
)
def test_bad_chunk_sizes_raise(tmp_path: Path, kwargs: dict, match: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text("reward,pscore,target_pscore\n1,0.5,0.5\n")
    with pytest.raises(ValueError, match=match):
        list(read_batches(path, **kwargs))


def test_merging_partials_of_different_estimators_or_bootstrap_settings_raises(
    log: pd.DataFrame,
) -> None:
    batch = OpeBatch.from_frame(log)
    with pytest.raises(ValueError, match="cannot merge partials of ipw and snipw"):
        IPS().partial(batch).merge(SNIPS().partial(batch))
    with pytest.raises(ValueError, match="one without"):
        IPS().partial(batch, n_bootstrap=10).merge(IPS().partial(batch))
    with pytest.raises(ValueError, match="share n_bootstrap and seed"):
        IPS().partial(batch, n_bootstrap=10).merge(IPS().partial(batch, n_bootstrap=10, seed=1))


# ---- the intervals themselves --------------------------------------------------------------


def test_poisson_multiplicities_are_poisson_one_and_a_pure_function_of_key_and_seed() -> None:
    keys = np.arange(200_000, dtype=np.uint64)
    m = poisson_multiplicities(keys, 3, seed=0)
    assert m.shape == (3, 200_000)
    assert m.mean() == pytest.approx(1.0, abs=0.01)
    assert m.var() == pytest.approx(1.0, abs=0.02)
    assert np.mean(m == 0) == pytest.approx(np.exp(-1), abs=0.005)
    assert np.array_equal(m[:, 5000:5010], poisson_multiplicities(keys[5000:5010], 3, seed=0))
    assert not np.array_equal(m, poisson_multiplicities(keys, 3, seed=1))


MEANS = np.array([0.2, 0.5, 0.7])


def bandit_replicate(rng: np.random.Generator, n: int) -> OpeBatch:
    action = rng.integers(3, size=n)
    return OpeBatch.from_arrays(
        reward=(rng.random(n) < MEANS[action]).astype(float),
        pscore=np.full(n, 1.0 / 3.0),
        target_pscore=(action == 2).astype(float),
    )


@pytest.fixture(scope="module")
def coverage() -> dict[str, tuple[float, float]]:
    """Per interval kind, over 200 replications of n = 400: coverage of the truth and mean
    half-width, for IPS."""
    rng = np.random.default_rng(11)
    batches = [bandit_replicate(rng, 400) for _ in range(200)]
    out = {}
    for kind in ("normal", "t", "bootstrap", "bernstein"):
        found = [IPS().estimate(b, interval=kind, n_bootstrap=200) for b in batches]
        covered = np.mean([e.lo <= MEANS[2] <= e.hi for e in found])
        out[kind] = (float(covered), float(np.mean([(e.hi - e.lo) / 2 for e in found])))
    return out


@pytest.mark.parametrize("kind", ["normal", "t", "bootstrap"])
def test_asymptotic_intervals_cover_at_about_their_nominal_rate(
    coverage: dict[str, tuple[float, float]], kind: str
) -> None:
    covered, _ = coverage[kind]
    # 95% nominal; the binomial sd over 200 replications is 0.015.
    assert 0.90 <= covered <= 0.99, (kind, covered)


def test_bernstein_covers_at_least_nominally_and_is_wider(
    coverage: dict[str, tuple[float, float]],
) -> None:
    covered, width = coverage["bernstein"]
    assert covered >= 0.97, covered  # a finite-sample bound is conservative
    assert width > coverage["normal"][1]


@pytest.mark.parametrize(
    ("estimator", "bounds", "match"),
    [
        (SNIPS(), Bounds(), "snipw has no Bernstein interval"),
        (IPS(), Bounds(weight_max=1.5), "weight_max 1.5 is below the largest weight"),
        (IPS(), Bounds(reward_max=0.5), "outside"),
        (DM(), Bounds(reward_min=0.3), "outside"),
    ],
)
def test_bernstein_refuses_what_it_cannot_bound(
    log: pd.DataFrame, estimator: object, bounds: Bounds, match: str
) -> None:
    batch = OpeBatch.from_frame(log)
    with pytest.raises(ValueError, match=match):
        estimator.estimate(batch, interval="bernstein", bounds=bounds)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": "wald"}, "interval must be one of normal, t, bernstein, bootstrap"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\)"),
        ({"interval": "bootstrap", "n_bootstrap": -1}, "n_bootstrap must be a non-negative int"),
    ],
)
def test_bad_interval_options_raise(log: pd.DataFrame, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IPS().estimate(OpeBatch.from_frame(log), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reward_min": 1.0, "reward_max": 0.0}, "reward_max must exceed reward_min"),
        ({"weight_max": 0.0}, "weight_max must be positive"),
        ({"reward_min": float("nan")}, "must be finite"),
    ],
)
def test_bad_bounds_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Bounds(**kwargs)

"""``loopbreak bench fm`` at toy size: the loaders on files written here, the leave-one-out split,
EASE against a direct numpy computation, the ranking metrics on hand-made rankings, the sim
loader, and the command end to end. No test reads the shared benchmark data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.ease import EASE, ease_weights, ease_weights_torch, interaction_matrix
from bench.fm_data import (
    SequenceData,
    leave_one_out,
    load_beauty,
    load_dataset,
    load_movielens,
    resolve_data_dir,
    simulate_sequences,
)
from cli.main import main
from fm_core.fm_eval import ranking_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_movielens(folder: Path, rows: list[tuple[int, int, int, int]]) -> Path:
    path = folder / "ml-100k" / "u.data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    return path


def write_beauty(folder: Path, rows: list[tuple[int, int]]) -> Path:
    path = folder / "beauty" / "beauty.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {i}\n" for u, i in rows))
    return path


# ---- loaders -------------------------------------------------------------------------------


def test_movielens_orders_each_user_by_time_then_item_id(tmp_path: Path) -> None:
    rows = [(2, 50, 4, 300), (1, 30, 5, 200), (1, 10, 3, 100), (1, 40, 1, 200), (2, 10, 2, 100)]
    data = load_movielens(write_movielens(tmp_path, rows))
    assert data.name == "ml-100k" and data.timed
    np.testing.assert_array_equal(data.catalog.item_ids, [10, 30, 40, 50])
    first, second = data.histories
    np.testing.assert_array_equal(first.item_ids, [10, 30, 40])  # 30 and 40 tie at t=200
    np.testing.assert_array_equal(first.times, [100.0, 200.0, 200.0])
    np.testing.assert_array_equal(second.item_ids, [10, 50])
    assert set(first.kinds) == {"play"}


def test_beauty_keeps_the_file_order_with_increasing_stand_in_times(tmp_path: Path) -> None:
    rows = [(1, 7), (1, 3), (2, 9), (1, 5), (2, 7)]
    data = load_beauty(write_beauty(tmp_path, rows))
    assert not data.timed
    np.testing.assert_array_equal(data.histories[0].item_ids, [7, 3, 5])
    np.testing.assert_array_equal(data.histories[1].item_ids, [9, 7])
    assert np.all(np.diff(data.histories[0].times) > 1800.0)  # never rolled up
    assert data.catalog.n_items == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\t2\t3\n", r"u.data:1: expected 4 fields \(user, item, rating, unix time\); got 3"),
        ("1\t2\t3\t4\n1\tx\t3\t4\n", r"u.data:2: fields must be integers"),
        ("\n", "holds no interactions"),
    ],
)
def test_movielens_rejects_malformed_lines_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_movielens(tmp_path, [])
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_movielens(path)


def test_missing_data_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"beauty data not found: expected the file .*"
                       r"beauty/beauty.txt"):  # fmt: skip
        load_dataset("beauty", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*nowhere is not a directory"):
        resolve_data_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="data must be one of"):
        load_dataset("netflix", tmp_path)


# ---- split ---------------------------------------------------------------------------------


def test_leave_one_out_holds_out_the_last_two_events(tmp_path: Path) -> None:
    rows = [(1, i, 5, 100 * k) for k, i in enumerate([10, 20, 30, 40, 50])]
    rows += [(2, 20, 5, 1), (2, 60, 5, 2)]  # two events: too short, left out
    rows += [(3, 60, 5, 7), (3, 10, 5, 8), (3, 30, 5, 9)]
    data = load_movielens(write_movielens(tmp_path, rows))
    split = leave_one_out(data)
    rows_of = data.catalog.rows
    assert len(split.train) == len(split.valid) == len(split.test) == 2
    np.testing.assert_array_equal(split.train[0].item_ids, [10, 20, 30])
    np.testing.assert_array_equal(split.train[1].item_ids, [60])
    np.testing.assert_array_equal(split.valid.target, rows_of(np.array([40, 10])))
    np.testing.assert_array_equal(split.test.target, rows_of(np.array([50, 30])))
    np.testing.assert_array_equal(split.valid.requests[0].history.item_ids, [10, 20, 30])
    np.testing.assert_array_equal(split.test.requests[0].history.item_ids, [10, 20, 30, 40])
    np.testing.assert_array_equal(split.test.seen[1], rows_of(np.array([10, 60])))
    assert split.test.requests[0].time == 400.0  # the request is at the target's time
    assert split.test.time.tolist() == [400.0, 9.0]


# ---- EASE ----------------------------------------------------------------------------------


def test_ease_weights_match_the_closed_form_computed_directly() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    lam = 5.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    b = ease_weights(x.T @ x, lam)
    np.testing.assert_allclose(b, expected, atol=1e-6)
    assert np.all(np.diag(b) == 0.0)


def test_ease_restricted_to_popular_items_leaves_the_others_unscored() -> None:
    rows = [np.array([0, 1]), np.array([0, 1, 2]), np.array([0, 2]), np.array([1, 3])]
    model = EASE(n_items=5, lam=1.0, max_items=3).fit(rows)
    np.testing.assert_array_equal(model.items_, [0, 1, 2])  # counts 3, 3, 2, 1, 0
    scores = model.scores([np.array([0, 3])])
    assert np.isneginf(scores[0, [3, 4]]).all()
    x = interaction_matrix([r[r < 3] for r in rows], 3).toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + np.eye(3))
    b = np.eye(3) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(scores[0, :3], b[0], atol=1e-5)  # the input row is item 0 only


@pytest.mark.parametrize("m", [12, 4001])  # float64, and float32 above 4,000 items
def test_ease_weights_on_a_device_match_the_host_path(m: int) -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((3 * m, m)) < min(0.3, 20 / m)).astype(np.float32)
    gram = x.T @ x
    host = ease_weights(gram, 30.0)
    device = ease_weights_torch(torch.as_tensor(gram), 30.0)
    assert device.dtype == torch.float32
    np.testing.assert_allclose(device.numpy(), host, atol=2e-5)
    assert torch.all(device.diagonal() == 0.0)


@pytest.mark.parametrize(
    ("gram", "lam", "error", "match"),
    [
        (np.eye(3), 0.0, ValueError, "lam must be > 0; got 0.0"),
        (np.eye(3), -1.0, ValueError, "lam must be > 0"),
        (np.ones((2, 3)), 1.0, ValueError, r"square matrix; got shape \(2, 3\)"),
        (np.ones(3), 1.0, ValueError, "square matrix"),
        (-5.0 * np.eye(3), 1.0, np.linalg.LinAlgError, "not positive definite"),
    ],
)
def test_ease_weights_refuse_bad_input_on_both_paths(
    gram: np.ndarray, lam: float, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ease_weights(gram, lam)
    with pytest.raises(error, match=match):
        ease_weights_torch(torch.as_tensor(gram), lam)


def test_ease_on_a_device_scores_as_the_host_path_for_every_lambda() -> None:
    rng = np.random.default_rng(2)
    rows = [rng.choice(30, size=rng.integers(1, 8), replace=False) for _ in range(200)]
    host = EASE(n_items=30, lam=3.0, max_items=20).fit(rows)
    device = EASE(n_items=30, lam=3.0, max_items=20, device="cpu").fit(rows)
    queries = [*rows[:25], np.array([29]), np.array([], dtype=np.int64)]
    for lam in (3.0, 300.0):
        host.set_lambda(lam)
        device.set_lambda(lam)
        expected = host.scores(queries)
        got = device.scores(queries)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)  # -inf where not kept
        assert np.isneginf(got.numpy()).sum() == np.isneginf(expected).sum() == 27 * 10


# ---- metrics -------------------------------------------------------------------------------


def test_ranking_metrics_on_hand_made_rankings() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.3],  # target 0 first
            [0.9, 0.5, 0.1, 0.3],  # target 3 third
            [0.9, 0.5, 0.1, 0.3],  # target 3 second once item 0 (seen) is removed
            [0.2, 0.2, 0.2, 0.9],  # target 0 tied with item 1 and 2 behind item 3
        ]
    )
    target = torch.tensor([0, 3, 3, 0])
    excluded = torch.zeros(4, 4, dtype=torch.bool)
    excluded[2, 0] = True
    excluded[3, 0] = True  # the target is never removed
    hr, ndcg = ranking_metrics(scores, target, 2, excluded=excluded)
    assert hr.tolist() == [1.0, 0.0, 1.0, pytest.approx(1 / 3)]
    tie = (1 / math.log2(3)) / 3  # rank 1, 2 or 3 equally likely; only rank 1 (0-based) counts
    np.testing.assert_allclose(ndcg.numpy(), [1.0, 0.0, 1 / math.log2(3), tie])
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranking_metrics(scores, target, 0)


def test_an_unscored_target_never_counts_as_a_hit() -> None:
    scores = torch.tensor([[1.0, float("-inf"), float("-inf"), 0.5]])
    hr, ndcg = ranking_metrics(scores, torch.tensor([1]), 2)
    # tied with item 2 behind two scored items: rank 2 or 3, never inside the top 2
    assert hr.item() == 0.0 and ndcg.item() == 0.0


# ---- sim -----------------------------------------------------------------------------------


def test_sim_sequences_carry_device_surface_and_hour_of_each_event() -> None:
    data = simulate_sequences(n_users=30, n_items=40, requests_per_user=20, seed=3)
    assert data.name == "sim" and data.timed and data.contexts is not None
    assert len(data.histories) == len(data.contexts) > 0
    for history, context in zip(data.histories, data.contexts, strict=True):
        assert np.all(np.diff(history.times) >= 0)
        assert np.unique(history.item_ids).size == len(history)  # first plays only
        assert context.devices is not None and context.local_hours is not None
        assert context.surfaces is not None
        assert set(context.devices) <= {"tv", "mobile", "web", "tablet"}
        assert set(context.surfaces) <= {"home", "search"}
        assert np.all((context.local_hours >= 0) & (context.local_hours < 24))
    again = simulate_sequences(n_users=30, n_items=40, requests_per_user=20, seed=3)
    np.testing.assert_array_equal(data.histories[0].item_ids, again.histories[0].item_ids)
    split = leave_one_out(data)
    assert split.test.requests[0].device in {"tv", "mobile", "web", "tablet"}


# ---- the command ---------------------------------------------------------------------------


def _tiny_movielens(folder: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, 25):
        start = int(rng.integers(0, 30))
        for k in range(12):  # users walk a cycle of 30 items
            rows.append((user, 1 + (start + k) % 30, 4, 1000 * k + user))
    write_movielens(folder, rows)


def test_evaluate_gives_each_metric_s_standard_error_over_the_queries(tmp_path: Path) -> None:
    from bench.fm_scoring import evaluate

    _tiny_movielens(tmp_path)
    data = load_dataset("ml-100k", str(tmp_path))
    queries = leave_one_out(data).test
    hit = np.asarray(queries.target) % 2 == 0  # these targets first, the others last

    def score(part: Any) -> torch.Tensor:
        scores = torch.zeros(len(part), data.catalog.n_items)
        target = torch.as_tensor(np.asarray(part.target))
        scores[torch.arange(len(part)), target] = torch.where(target % 2 == 0, 10.0, -10.0)
        return scores

    result = evaluate(score, queries, data.catalog.release_time, chunk=5)
    assert 0 < hit.sum() < hit.size
    se = hit.std(ddof=1) / math.sqrt(hit.size)
    assert result["hr@10"] == pytest.approx(hit.mean()) == result["ndcg@10"]
    assert result["hr@10_se"] == pytest.approx(se) == result["ndcg@10_se"]
    one = evaluate(score, queries.subset(np.arange(1)), data.catalog.release_time)
    assert one["ndcg@10_se"] == 0.0  # no spread from one query


def test_bench_fm_command_prints_the_table_and_the_json_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiny_movielens(tmp_path)
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "2",
            "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"data", "models", "train_seq_per_s", "score_ms_p50", "score_ms_p99", "device"} <= set(
        result
    )
    assert result["data"] == "ml-100k"
    assert set(result["models"]) == {"fm", "ease", "popularity"}
    for metrics in result["models"].values():
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    assert result["score_ms_p99"] >= result["score_ms_p50"] > 0
    assert "popularity" in "\n".join(lines[:-1]) and "NDCG@10" in lines[1] and "s.e." in lines[1]
    for metrics in result["models"].values():
        assert metrics["ndcg@10_se"] >= 0 and metrics["hr@10_se"] >= 0
    # model FLOPs against the device's peak: none is published for the CPU, so no fraction
    fm = result["fm"]
    assert result["train_flops_per_step"] == pytest.approx(
        fm["train_flops_per_s"] * fm["train_step_seconds"] / fm["train_steps"]
    )
    assert result["train_flops_per_step"] > 0 and result["train_flops_per_s"] > 0
    assert result["device"] == "cpu" and result["fraction_of_peak"] is None
    assert result["peak_flops_per_s"] is None
    assert "no published peak for the cpu" in result["fraction_of_peak_note"]
    assert "GFLOP per training step" in "\n".join(lines[:-1])
    # a batch of requests (the 24 users, fewer than 64) in one forward pass
    assert result["latency"]["batch_requests"] == 24
    assert result["batch_requests_per_s"] > 0


def test_refit_retrains_on_every_event_before_the_test_target_and_never_on_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fm_core.train_fm as train_module
    from bench.fm_scoring import evaluate, popularity_scores

    _tiny_movielens(tmp_path)
    trained: list[list[Any]] = []
    real = train_module.train_fm

    def spy(sequences: Any, *args: Any, **kwargs: Any) -> Any:
        trained.append([h for h, _ in sequences])
        return real(sequences, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_fm", spy)
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "2",
            "--threads", "1", "--refit", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["models"]) == {"fm", "ease", "popularity", "fm_refit", "ease_refit",
                                     "popularity_refit"}  # fmt: skip
    data = load_dataset("ml-100k", str(tmp_path))
    split = leave_one_out(data)
    # the selection run trains on all but the last two events, the refit on all but the last
    assert [len(h) for h in trained[0]] == [10] * 24
    assert [len(h) for h in trained[1]] == [11] * 24
    for history, full in zip(trained[1], data.histories, strict=True):
        np.testing.assert_array_equal(history.item_ids, full.item_ids[:-1])
    assert result["refit"]["epochs"] == result["fm"]["best_epoch"] + 1
    assert result["refit"]["train_events"] == 24 * 11
    rows = np.concatenate([data.catalog.rows(h.item_ids) for h in trained[1]])
    counts = np.bincount(rows, minlength=data.catalog.n_items)
    expected = evaluate(popularity_scores(counts), split.test, data.catalog.release_time)
    assert result["models"]["popularity_refit"] == pytest.approx(expected)


def test_bench_fm_on_sim_adds_the_ablation_without_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "fm", "--data", "sim", "--sim-users", "40", "--sim-items", "40",
            "--sim-requests", "15", "--epochs", "1", "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["models"]) == {"fm", "fm_no_time", "ease", "popularity"}
    assert result["latency"]["candidates"] == 40  # the whole catalog, smaller than 1,000


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--epochs", "0", "--epochs must be an integer >= 1; got 0"),
        ("--sampled", "-1", "--sampled must be an integer >= 0"),
        ("--batch-size", "0", "--batch-size must be an integer >= 1"),
        ("--lr", "0", "--lr must be a finite number > 0"),
        ("--lr", "nan", "--lr must be a finite number > 0; got nan"),
        ("--lr", "inf", "--lr must be a finite number > 0"),
        ("--dropout", "1", "--dropout must be in [0, 1); got 1.0"),
        ("--dropout", "-0.1", "--dropout must be in [0, 1)"),
        ("--patience", "0", "--patience must be an integer >= 1"),
        ("--d-model", "0", "--d-model must be an integer >= 1"),
        ("--d-model", "65", "--d-model must be a multiple of the preset's 2 attention heads"),
        ("--layers", "0", "--layers must be an integer >= 1"),
        ("--weight-decay", "-0.1", "--weight-decay must be a finite number >= 0"),
        ("--weight-decay", "nan", "--weight-decay must be a finite number >= 0; got nan"),
        ("--distill-weight", "0", "--distill-weight must be in (0, 1]; got 0.0"),
        ("--distill-weight", "1.5", "--distill-weight must be in (0, 1]; got 1.5"),
        ("--distill-weight", "nan", "--distill-weight must be in (0, 1]; got nan"),
        ("--ensemble", "0", "--ensemble must be an integer >= 1; got 0"),
    ],
)
def test_bench_fm_refuses_a_bad_override_naming_its_option_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    # the data folder is empty: the option is refused before the loader would fail on it
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), option, value,
            "--json"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}")


def test_bench_fm_width_depth_and_weight_decay_reach_the_trained_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.fm as bench_fm

    _tiny_movielens(tmp_path)
    models: list[Any] = []
    real = bench_fm.run_fm

    def keep(*args: Any, **kwargs: Any) -> Any:
        test, model, info = real(*args, **kwargs)
        models.append(model)
        return test, model, info

    monkeypatch.setattr(bench_fm, "run_fm", keep)
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "1",
            "--threads", "1", "--d-model", "32", "--layers", "1", "--weight-decay", "0.1",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    fm = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fm"]
    assert (fm["d_model"], fm["n_layers"], fm["weight_decay"]) == (32, 1, 0.1)
    assert models[0].pos_emb.weight.shape[1] == 32 and len(models[0].blocks) == 1
    assert fm["max_epochs"] == 1 and fm["max_len"] == bench_fm.PRESETS["ml-100k"].max_len


def test_an_ensemble_ranks_by_the_members_mean_log_probability(tmp_path: Path) -> None:
    from bench.fm_scoring import evaluate, mean_log_probability

    _tiny_movielens(tmp_path)
    data = load_dataset("ml-100k", str(tmp_path))
    queries = leave_one_out(data).test
    rng = np.random.default_rng(0)
    a = torch.as_tensor(rng.normal(size=(len(queries), data.catalog.n_items)))
    b = torch.as_tensor(rng.normal(size=(len(queries), data.catalog.n_items)))

    def fixed(table: torch.Tensor) -> Any:
        return lambda part: table[torch.as_tensor(_rows_of(queries, part))]

    release = data.catalog.release_time
    # a model with itself, or with a shifted or scaled-up copy of itself, ranks as it does alone
    alone = evaluate(fixed(a), queries, release, chunk=7)
    for twin in (a, a + 5.0, a * 3.0):
        assert evaluate(mean_log_probability([fixed(a), fixed(twin)]), queries, release,
                        chunk=7) == pytest.approx(alone)  # fmt: skip
    # two different models: the mean of their log-softmaxes, by hand
    mean = (torch.log_softmax(a.float(), -1) + torch.log_softmax(b.float(), -1)) / 2
    by_hand = evaluate(fixed(mean), queries, release, chunk=7)
    ensemble = evaluate(mean_log_probability([fixed(a), fixed(b)]), queries, release, chunk=7)
    assert ensemble == pytest.approx(by_hand)
    assert ensemble != pytest.approx(alone)  # b changes the ranking


def _rows_of(queries: Any, part: Any) -> np.ndarray:
    """The rows of ``part`` (a chunk of ``queries``) in ``queries``, matched by request."""
    index = {id(r): i for i, r in enumerate(queries.requests)}
    return np.array([index[id(r)] for r in part.requests])


def test_bench_fm_ensemble_adds_a_row_and_keeps_the_single_fm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiny_movielens(tmp_path)
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "1",
            "--threads", "1", "--ensemble", "2", "--json"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result["models"]) == {"fm", "ease", "popularity", "fm_ensemble"}
    assert result["ensemble"]["seeds"] == [0, 1]
    assert result["ensemble"]["member_test"][0] == result["models"]["fm"]  # the single model
    assert result["ensemble"]["member_test"][1] != result["models"]["fm"]  # another seed
    assert "2 FMs (seeds 0-1), mean log-probability" in "\n".join(lines)
    assert main([*argv[:-3], "--ensemble", "0"]) == 2
    assert "error: --ensemble must be an integer >= 1; got 0" in capsys.readouterr().err


def test_bench_fm_distill_trains_one_more_fm_taught_by_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.fm as bench_fm

    _tiny_movielens(tmp_path)
    calls: list[dict[str, Any]] = []
    real = bench_fm.run_fm

    def keep(*args: Any, **kwargs: Any) -> Any:
        test, model, info = real(*args, **kwargs)
        calls.append(kwargs | {"model": model})
        return test, model, info

    monkeypatch.setattr(bench_fm, "run_fm", keep)
    argv = ["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "1",
            "--threads", "1", "--distill", "--distill-weight", "0.3", "--json"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result["models"]) == {"fm", "ease", "popularity", "fm_distilled"}
    taught = result["distilled"]
    assert (taught["seed"], taught["teacher_seeds"], taught["weight"]) == (1, [0], 0.3)
    assert taught["valid_ndcg_by_epoch"] and taught["best_epoch"] == 0
    assert result["models"]["fm_distilled"] != result["models"]["fm"]
    # the student is taught by the fm row's own model, and is a model of its own
    (first, student) = calls
    assert "distill" not in first and student["seed"] == 1
    assert student["distill"].teachers == (first["model"],)
    assert student["distill"].weight == 0.3 and student["model"] is not first["model"]
    assert "one FM (seed 1) taught by 1 (seeds 0), weight 0.3, best epoch 1 of 1" in "\n".join(
        lines
    )


def test_bench_fm_runs_alone_through_python_m_cli_bench(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.bench import standalone

    _tiny_movielens(tmp_path)
    argv = ["fm", "--data", "ml-100k", "--data-dir", str(tmp_path), "--epochs", "1",
            "--threads", "1", "--json"]  # fmt: skip
    assert standalone(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["data"] == "ml-100k" and "NDCG@10" in lines[1]
    assert standalone(["fm", "--data-dir", str(tmp_path), "--lr", "-1"]) == 2
    assert "error: --lr must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        standalone(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_python_m_cli_bench_fm_imports_neither_the_service_nor_the_store_stack() -> None:
    # what lets `make bench-gpu` run on a GPU image that has torch and numpy but none of these
    code = (
        "import sys\n"
        "from cli.bench import standalone\n"
        "try:\n"
        "    standalone(['fm', '--help'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "stacks = ('sqlalchemy', 'sqlmodel', 'pydantic', 'fastapi', 'vowpalwabbit', 'obp')\n"
        "print(sorted(m for m in stacks if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_gpu_suite_writes_each_chosen_run_s_table_and_json_line(tmp_path: Path) -> None:
    # on the CPU, at toy size: the plumbing of `make bench-gpu`, not its measurements
    _tiny_movielens(tmp_path)
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "gpu"
    env = os.environ | {"GPU_PYTHON": sys.executable, "DATA_DIR": str(tmp_path),
                        "GPU_OUT": str(out), "GPU_RUNS": "ml100k",
                        "GPU_ARGS": "--epochs 1 --threads 1"}  # fmt: skip
    done = subprocess.run(["sh", "bench/gpu_suite.sh"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["device.txt", "logs.txt", "results.jsonl",
                                                      "tables.txt"]  # fmt: skip
    (line,) = (out / "results.jsonl").read_text().splitlines()  # only the run asked for
    result = json.loads(line)
    assert (result["run"], result["exit"], result["data"]) == ("ml100k", 0, "ml-100k")
    assert result["fm"]["max_epochs"] == 1
    tables = (out / "tables.txt").read_text()
    assert "== ml100k" in tables and "NDCG@10" in tables and "ml100k: exit 0" in tables
    assert "gpus" in (out / "device.txt").read_text()


def test_bench_fm_without_data_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ml-100k data not found"):
        main(["bench", "fm", "--data", "ml-100k", "--data-dir", str(tmp_path)])


def test_sequence_data_counts_events(tmp_path: Path) -> None:
    data = load_beauty(write_beauty(tmp_path, [(1, 1), (1, 2), (2, 1)]))
    assert isinstance(data, SequenceData) and data.n_events == 3

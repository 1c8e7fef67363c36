"""The ranker, its calibration and the FM + ranker scorer: shapes, the DCN-v2 cross layer,
calibration methods against a known miscalibration, PAV, the ranker's calibration against the
simulated world's true P(play), the Scorer protocol, retrieval, persistence and bad inputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sim_logs import DAY, T0, K, UniformLogging, impressions

from fm_core import PopularityAffinityScorer, Scorer, ScoreRequest
from fm_core.calibration import (
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    pool_adjacent_violators,
    reliability_table,
)
from fm_core.fm_scorer import FMRankerScorer
from fm_core.fm_scorer_fit import FMScorerConfig, fit_fm_scorer
from fm_core.model_file import load_scorer_file
from fm_core.ranker import (
    LEXICAL_FEATURES,
    N_PAIR_FEATURES,
    PAIR_FEATURES,
    CrossLayer,
    Ranker,
    RankerConfig,
    RankerInputs,
    RankerTrainConfig,
    query_tokens,
)
from fm_core.train_fm import TrainConfig
from loop.sim_bridge import catalog_from_world
from sim import Request, World, WorldConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- the ranker ------------------------------------------------------------------------------


def random_inputs(cfg: RankerConfig, *, n_requests: int, n_pairs: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return RankerInputs(
        user=torch.randn(n_requests, cfg.d_fm, generator=g),
        source=torch.randn(n_requests, cfg.d_fm, generator=g),
        context=torch.randint(0, 4, (n_requests, 4), generator=g),
        query=torch.randint(
            0, cfg.n_query_buckets, (n_requests, cfg.max_query_tokens), generator=g
        ),
        request_index=torch.randint(0, n_requests, (n_pairs,), generator=g),
        item=torch.randn(n_pairs, cfg.d_fm, generator=g),
        dense=torch.randn(n_pairs, N_PAIR_FEATURES, generator=g),
        position=torch.randint(0, 12, (n_pairs,), generator=g),
    )


def test_ranker_shapes() -> None:
    cfg = RankerConfig(d_fm=12, d_embed=8, hidden=(16, 8))
    ranker = Ranker(cfg).eval()
    inputs = random_inputs(cfg, n_requests=3, n_pairs=7)
    assert ranker.x0(inputs).shape == (7, cfg.d_input)
    logits = ranker(inputs)
    assert logits.shape == (7,) and torch.isfinite(logits).all()
    assert ranker(inputs.pairs(torch.tensor([0, 4]))).shape == (2,)


def test_cross_layer_is_x0_times_affine_plus_residual() -> None:
    torch.manual_seed(0)
    layer = CrossLayer(5)
    x0, x = torch.randn(4, 5), torch.randn(4, 5)
    W, b = layer.linear.weight, layer.linear.bias
    expected = x0 * (x @ W.T + b) + x
    torch.testing.assert_close(layer(x0, x), expected)
    # With W = 0 and b = 0 the layer is the identity on x_l.
    with torch.no_grad():
        layer.linear.weight.zero_()
        layer.linear.bias.zero_()
    torch.testing.assert_close(layer(x0, x), x)


def test_position_is_a_logit_offset_that_is_zero_at_the_top() -> None:
    cfg = RankerConfig(d_fm=8, d_embed=4, hidden=(8,), n_positions=5)
    ranker = Ranker(cfg).eval()
    inputs = random_inputs(cfg, n_requests=2, n_pairs=6)
    top = replace(inputs, position=torch.zeros(6, dtype=torch.int64))
    third = replace(inputs, position=torch.full((6,), 2, dtype=torch.int64))
    far = replace(inputs, position=torch.full((6,), 99, dtype=torch.int64))
    with torch.no_grad():
        assert float(ranker.position_logit(torch.tensor([0]))) == 0.0
        torch.testing.assert_close(
            ranker(third) - ranker(top), ranker.position_logit(third.position)
        )
        # Positions past the last bucket share it; the prior makes lower positions weaker.
        torch.testing.assert_close(
            ranker(far), ranker(replace(inputs, position=far.position * 0 + 4))
        )
        assert float(ranker.position_logit(torch.tensor([4]))) < 0.0


def test_query_tokens_are_casefolded_words() -> None:
    assert query_tokens("Kavo  MIRA!") == ["kavo", "mira"]
    assert query_tokens("genre:drama x") == ["genre:drama", "x"]
    assert query_tokens(None) == [] and query_tokens("") == []


# ---- calibration ----------------------------------------------------------------------------


def miscalibrated(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True logits z, labels ~ Bernoulli(σ(z)), and overconfident logits 3z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.5, 1.2, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    return z, labels, 3.0 * z


@pytest.mark.parametrize("method", ["temperature", "isotonic", "auto"])
def test_calibration_recovers_a_known_miscalibration(method: str) -> None:
    _, labels, scaled = miscalibrated()
    raw = 1.0 / (1.0 + np.exp(-scaled))
    calibrator = fit_calibrator(scaled, labels, method=method)
    # Fresh rows from the same process: the fit is judged out of sample.
    _, test_labels, test_scaled = miscalibrated(seed=1)
    before = expected_calibration_error(1.0 / (1.0 + np.exp(-test_scaled)), test_labels)
    after = expected_calibration_error(calibrator.predict(test_scaled), test_labels)
    assert before > 0.03
    assert after < 0.01 and after < before / 4
    assert expected_calibration_error(calibrator.predict(scaled), labels) < 0.5 * (
        expected_calibration_error(raw, labels)
    )
    if method == "temperature":
        assert calibrator.scale == pytest.approx(1 / 3, rel=0.1)
        assert calibrator.bias == pytest.approx(0.0, abs=0.15)


def test_pav_output_is_monotone_and_optimal_on_a_small_case() -> None:
    rng = np.random.default_rng(3)
    y, w = rng.normal(size=200), rng.uniform(0.1, 2.0, size=200)
    fitted = pool_adjacent_violators(y, w)
    assert fitted.shape == y.shape and np.all(np.diff(fitted) >= -1e-12)
    # Pooling preserves the weighted mean, and a known case pools exactly the violators.
    assert np.sum(w * fitted) == pytest.approx(np.sum(w * y))
    np.testing.assert_allclose(
        pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 2.0, 5.0, 0.0])),
        [1.0, 7 / 3, 7 / 3, 7 / 3, 2.5, 2.5],
    )
    np.testing.assert_allclose(
        pool_adjacent_violators(np.array([2.0, 0.0]), np.array([3.0, 1.0])), [1.5, 1.5]
    )


def test_isotonic_calibrator_is_monotone_in_the_logit() -> None:
    _, labels, scaled = miscalibrated(n=5000)
    calibrator = fit_calibrator(scaled, labels, method="isotonic")
    grid = np.linspace(-20, 5, 500)
    assert np.all(np.diff(calibrator.predict(grid)) >= 0)
    restored = Calibrator.from_dict(calibrator.to_dict())
    np.testing.assert_array_equal(restored.predict(grid), calibrator.predict(grid))


def test_reliability_table_bins_every_row_once() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 1000)
    y = (rng.random(1000) < p).astype(float)
    table = reliability_table(p, y, n_bins=10)
    assert sum(b.count for b in table) == 1000
    assert all(90 <= b.count <= 110 for b in table)  # equal mass
    assert all(b.lo <= b.mean_predicted <= b.hi for b in table)
    uniform = reliability_table(p, y, n_bins=10, strategy="uniform")
    assert sum(b.count for b in uniform) == 1000 and len(uniform) == 2  # p < 0.2
    # A perfectly calibrated constant has ECE 0; a predictor off by 0.1 has ECE 0.1.
    constant = np.full(1000, y.mean())
    assert expected_calibration_error(constant, y) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.clip(constant + 0.1, 0, 1), y) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fit_calibrator(np.zeros(3), np.zeros(4)), "same length"),
        (lambda: fit_calibrator(np.zeros(0), np.zeros(0)), "empty"),
        (lambda: fit_calibrator(np.array([0.0, np.nan]), np.zeros(2)), "finite"),
        (lambda: fit_calibrator(np.zeros(2), np.array([0.0, 2.0])), r"labels must be in \[0, 1\]"),
        (lambda: fit_calibrator(np.zeros(2), np.zeros(2), np.array([1.0, -1.0])), "weights"),
        (lambda: fit_calibrator(np.zeros(2), np.zeros(2), method="beta"), "method must be one"),
        (lambda: reliability_table(np.array([1.5]), np.array([1.0])), "probabilities must be"),
        (lambda: reliability_table(np.zeros(2), np.zeros(2), n_bins=0), "n_bins"),
        (lambda: reliability_table(np.zeros(2), np.zeros(2), strategy="x"), "strategy"),
    ],
)
def test_bad_calibration_inputs_name_the_problem(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---- the simulated world: uniform-random slates with point-in-time histories ---------------------


def small_config(**ranker: object) -> FMScorerConfig:
    return FMScorerConfig(
        fm_train=TrainConfig(epochs=4, batch_size=32, progress=False),
        ranker_train=RankerTrainConfig(epochs=4, progress=False, **ranker),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def fitted() -> dict:
    world = World(WorldConfig(seed=11, n_items=100, n_users=70))
    catalog = catalog_from_world(world)
    logging_run = UniformLogging(world, seed=1)
    train = logging_run.run(0.0, 24.0, 4000)
    scorer, report = fit_fm_scorer(
        impressions(train, with_plays=False), catalog, small_config(), model_version="fm-test"
    )
    baseline = PopularityAffinityScorer(catalog)
    baseline.fit(impressions(train, with_plays=False), model_version="baseline-test")

    # Later days, never seen in training: before each outcome is recorded, the world's true
    # P(play | shown at the top) of every available item, beside the scorer's prediction.
    truth, predicted, top_predicted, greedy, greedy_baseline, random = [], [], [], [], [], []

    def evaluate(request: Request, score_request: ScoreRequest, slate: np.ndarray) -> None:
        available = world.available(request.t)
        scores = scorer.score([score_request], [available])[0]
        truth.append(world.item_rewards(request, available))  # θ_0 = 1: P(play | at the top)
        predicted.append(scores)
        top_predicted.append(scores[np.searchsorted(available, slate[0])])
        greedy.append(
            world.expected_reward(request, available[np.lexsort((available, -scores))][:K])
        )
        base = baseline.score([score_request], [available])[0]
        greedy_baseline.append(
            world.expected_reward(request, available[np.lexsort((available, -base))][:K])
        )
        random.append(world.expected_reward(request, slate))

    held_out = logging_run.run(24.0, 30.0, 1000, before_record=evaluate)
    return {
        "world": world,
        "catalog": catalog,
        "scorer": scorer,
        "report": report,
        "held_out": held_out,
        "truth": np.concatenate(truth),
        "predicted": np.concatenate(predicted),
        "top_predicted": np.array(top_predicted),
        "greedy": np.array(greedy),
        "greedy_baseline": np.array(greedy_baseline),
        "random": np.array(random),
    }


def test_fit_reports_calibration_on_held_out_decisions(fitted: dict) -> None:
    report = fitted["report"]
    print(
        f"held-out ECE {report.ece:.4f} (raw {report.ece_raw:.4f}), log loss {report.log_loss:.4f}"
        f" (raw {report.log_loss_raw:.4f}), method {report.calibration}"
    )
    assert report.train_pairs + report.holdout_pairs == 40000
    assert 0.15 < report.holdout_pairs / 40000 < 0.25
    assert report.holdout_plays > 50
    assert report.ece < 0.01
    assert sum(b["count"] for b in report.reliability) == report.holdout_pairs
    rates = [b["observed_rate"] for b in report.reliability]
    # Reliability: the top bin plays clearly more than the bottom bin.
    assert rates[-1] > 2 * rates[0]
    assert len(report.fm_epochs) == 4 and len(report.ranker_epochs) == 4


def test_ranker_calibration_tracks_the_worlds_true_play_probability(fitted: dict) -> None:
    """On later days, predictions for every available item against the world's exact P(play |
    shown at the top): close on average, correlated, and calibrated against the plays."""
    truth, predicted = fitted["truth"], fitted["predicted"]
    correlation = np.corrcoef(predicted, truth)[0, 1]
    print(f"mean predicted {predicted.mean():.4f}, true {truth.mean():.4f}, corr {correlation:.3f}")
    assert abs(predicted.mean() / truth.mean() - 1.0) < 0.25
    assert correlation > 0.4
    # Binned by prediction, the true probabilities follow the predictions (ECE against truth).
    assert expected_calibration_error(predicted, truth) < 0.25 * truth.mean()
    # The shown top items' predictions against the observed top plays.
    observed = fitted["held_out"].played[:, 0].astype(np.float64)
    top = fitted["top_predicted"]
    se = np.sqrt(np.sum(top * (1 - top))) / top.size
    assert abs(observed.mean() - top.mean()) < 4.5 * se


def test_fm_scorer_ranks_well_against_the_truth(fitted: dict) -> None:
    greedy, baseline, random = fitted["greedy"], fitted["greedy_baseline"], fitted["random"]
    print(f"greedy top-{K}: fm {greedy.mean():.4f}, baseline {baseline.mean():.4f}, "
          f"random {random.mean():.4f}")  # fmt: skip
    assert greedy.mean() > 2.0 * random.mean()
    assert greedy.mean() > 0.85 * baseline.mean()


# ---- the Scorer interface ----------------------------------------------------------------------


def test_fm_scorer_is_a_scorer_and_batches_equal_single_requests(fitted: dict) -> None:
    scorer: FMRankerScorer = fitted["scorer"]
    assert isinstance(scorer, Scorer)
    requests = fitted["held_out"].score_requests[:12]
    rng = np.random.default_rng(0)
    candidates = [
        rng.choice(fitted["catalog"].item_ids, size=int(rng.integers(1, 30)), replace=False)
        for _ in requests
    ]
    batched = scorer.score(requests, candidates)
    for request, items, scores in zip(requests, candidates, batched, strict=True):
        single = scorer.score([request], [items])[0]
        assert scores.shape == items.shape
        np.testing.assert_allclose(scores, single, rtol=1e-5, atol=1e-7)
        assert np.all((scores > 0) & (scores < 1))
    scorer.request_batch = 5  # several FM passes per call give the same scores
    try:
        np.testing.assert_allclose(
            np.concatenate(scorer.score(requests, candidates)),
            np.concatenate(batched),
            rtol=1e-5,
            atol=1e-7,
        )
    finally:
        scorer.request_batch = 256
    embeddings = scorer.user_embeddings(requests)
    assert embeddings.shape == (12, scorer.fm.cfg.d_model)
    assert scorer.item_embeddings(np.array([3, 1])).shape == (2, scorer.fm.cfg.d_model)


def test_retrieval_is_sorted_released_and_excludes_seen(fitted: dict) -> None:
    scorer: FMRankerScorer = fitted["scorer"]
    catalog = fitted["catalog"]
    request = max(fitted["held_out"].score_requests, key=lambda r: len(r.history))
    # Early in the world's time, some items are not released yet.
    early = replace(request, time=T0 + 1.0 * DAY)
    unreleased = set(catalog.item_ids[catalog.release_time > early.time].tolist())
    assert unreleased
    top = scorer.retrieve(early, catalog.n_items)
    assert not unreleased & set(top.tolist())
    assert top.size == catalog.n_items - len(unreleased)
    seen = set(request.history.plays().tolist())
    assert seen
    with_seen = scorer.retrieve(request, 20)
    without = scorer.retrieve(request, 20, exclude_seen=True)
    assert not seen & set(without.tolist())
    assert without.size == 20
    # Best first by the FM's logits.
    user = torch.from_numpy(scorer.user_embeddings([request]))
    logits = (user @ scorer._items.table.cpu().T + scorer._items.bias.cpu())[0].numpy()
    rows = catalog.rows(with_seen)
    assert np.all(np.diff(logits[rows]) <= 1e-6)
    assert scorer.retrieve(request, 3).tolist() == with_seen[:3].tolist()


def test_search_requests_see_lexical_matches(fitted: dict) -> None:
    scorer: FMRankerScorer = fitted["scorer"]
    catalog = fitted["catalog"]
    title = [t for t in catalog.tokens[7] if ":" not in t]
    request = replace(
        fitted["held_out"].score_requests[0], surface="search", query=" ".join(title).upper()
    )
    items = np.array([7, 8, 9])
    inputs = scorer.inputs([request], np.zeros(3, dtype=np.int64), catalog.rows(items))
    lexical = inputs.dense[:, [PAIR_FEATURES.index(n) for n in LEXICAL_FEATURES]].numpy()
    has_query, query_share, _, all_tokens, exact = lexical.T
    assert np.all(has_query == 1)
    assert query_share[0] == 1.0 and all_tokens[0] == 1.0 and exact[0] == 1.0
    assert exact[1] == 0.0 and exact[2] == 0.0
    plain = scorer.inputs(
        [fitted["held_out"].score_requests[0]], np.zeros(3, np.int64), catalog.rows(items)
    )
    assert plain.dense[:, PAIR_FEATURES.index("has_query")].sum() == 0


def test_save_load_round_trip(fitted: dict, tmp_path: Path) -> None:
    scorer: FMRankerScorer = fitted["scorer"]
    path = scorer.save(tmp_path / "model.npz")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_scorer_file(path)
    assert isinstance(loaded, FMRankerScorer)
    assert loaded.model_version == "fm-test"
    np.testing.assert_array_equal(loaded.catalog.item_ids, scorer.catalog.item_ids)
    assert loaded.catalog.tokens == scorer.catalog.tokens
    requests = fitted["held_out"].score_requests[:5]
    candidates = [fitted["catalog"].item_ids[:40]] * 5
    for a, b in zip(
        loaded.score(requests, candidates), scorer.score(requests, candidates), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert loaded.retrieve(requests[0], 10).tolist() == scorer.retrieve(requests[0], 10).tolist()
    # The same loader opens a baseline model file too, and refuses anything else.
    baseline_path = PopularityAffinityScorer(fitted["catalog"]).save(tmp_path / "base.npz")
    assert isinstance(load_scorer_file(baseline_path), PopularityAffinityScorer)
    (tmp_path / "junk.npz").write_text("not a model")
    with pytest.raises(ValueError, match="not a loopbreak model file"):
        load_scorer_file(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="not an fm_ranker model"):
        FMRankerScorer.load(baseline_path)


@pytest.mark.parametrize(
    ("candidates", "n_requests", "match"),
    [
        ([np.array([1, 2, 99999])], 1, r"candidates\[0\] holds item ids the catalog does not know"),
        ([np.array([], dtype=np.int64)], 1, r"candidates\[0\] must be a non-empty"),
        ([np.array([1, 2]), np.array([3])], 1, "same length"),
        ([np.array([[1, 2]])], 1, r"candidates\[0\] must be a non-empty 1-D"),
        ([np.array([1.5, 2.0])], 1, "integer item ids"),
    ],
)
def test_bad_score_inputs_name_the_field(
    fitted: dict, candidates: list[np.ndarray], n_requests: int, match: str
) -> None:
    requests = fitted["held_out"].score_requests[:n_requests]
    with pytest.raises(ValueError, match=match):
        fitted["scorer"].score(requests, candidates)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_retrieve_rejects_a_bad_n(fitted: dict, n: object) -> None:
    with pytest.raises(ValueError, match="n must be a positive int"):
        fitted["scorer"].retrieve(fitted["held_out"].score_requests[0], n)


def test_fit_refuses_data_it_cannot_learn_from(fitted: dict) -> None:
    catalog = fitted["catalog"]
    held = fitted["held_out"]
    data = impressions(held, with_plays=False)
    with pytest.raises(ValueError, match="no impressions"):
        fit_fm_scorer(replace(data, labels=np.empty(0)), catalog, small_config())
    with pytest.raises(ValueError, match="hold no play"):
        fit_fm_scorer(replace(data, labels=np.zeros_like(data.labels)), catalog, small_config())
    with pytest.raises(ValueError, match="holdout_share"):
        FMScorerConfig(holdout_share=1.0)

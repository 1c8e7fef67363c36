"""The foundation model's first slice: tokenization, the causal model, its objectives, training
and checkpoints. CPU, tiny sizes; the data is built here from fm_core.types with numpy."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fm_core.checkpoint import load_checkpoint
from fm_core.fm_eval import evaluate_next_item
from fm_core.model import FMConfig, FoundationModel
from fm_core.objectives import engagement_weight, negatives_seen, sampled_softmax_loss
from fm_core.tokenize import (
    DEVICE_VOCAB,
    KIND_VOCAB,
    N_DENSE,
    NO_TARGET,
    PREV_BOS,
    PREV_UNKNOWN,
    SURFACE_VOCAB,
    EventContext,
    collate,
    rollup,
    sliding_windows,
    tokenize_histories,
    tokenize_requests,
    tokens_of,
    training_windows,
)
from fm_core.train_fm import TrainConfig, train_fm
from fm_core.types import History, ItemCatalog, ScoreRequest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


T0 = 1.75e9  # POSIX seconds, mid 2025
DAY = 86400.0
HOUR = 3600.0


def make_catalog(n_items: int = 20, n_genres: int = 4, *, age_days: float = 60.0) -> ItemCatalog:
    """Item i has genre i % n_genres, tokens naming its genre and a language."""
    genres = np.zeros((n_items, n_genres), dtype=bool)
    genres[np.arange(n_items), np.arange(n_items) % n_genres] = True
    return ItemCatalog(
        item_ids=np.arange(100, 100 + n_items, dtype=np.int64),
        genres=genres,
        release_time=np.full(n_items, T0 - age_days * DAY),
        tokens=tuple((f"genre{i % n_genres}", "en") for i in range(n_items)),
    )


def history_of(items: np.ndarray, *, start: float = T0, gap: float = HOUR) -> History:
    """Plays of ``items`` (ids), one every ``gap`` seconds, 20 minutes each."""
    n = len(items)
    return History(
        item_ids=np.asarray(items, dtype=np.int64),
        times=start + gap * np.arange(n, dtype=np.float64),
        kinds=np.array(["play"] * n, dtype=object),
        values=np.full(n, 1200.0),
        sources=np.array(["rec"] * n, dtype=object),
    )


def cycle_histories(catalog: ItemCatalog, n_users: int, length: int, seed: int) -> list[History]:
    """Deterministic cycles: the item after row r is row r + 1 (mod n)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, catalog.n_items, size=n_users)
    return [history_of(catalog.item_ids[(s + np.arange(length)) % catalog.n_items]) for s in starts]


def tiny_config(catalog: ItemCatalog, **overrides: object) -> FMConfig:
    base = {"d_model": 32, "n_heads": 2, "n_layers": 2, "max_len": 16, "dropout": 0.0}
    return FMConfig(**(base | overrides)).with_catalog(catalog)  # type: ignore[arg-type]


# ---- tokenization ---------------------------------------------------------------------------


def test_rollup_merges_repeated_events_within_the_window_and_not_across_it() -> None:
    minute = 60.0
    history = History(
        item_ids=np.array([7, 7, 7, 8, 7]),
        times=T0 + minute * np.array([0.0, 10.0, 55.0, 60.0, 61.0]),
        kinds=np.array(["click", "play", "thumb_up", "play", "play"], dtype=object),
        values=np.array([0.0, 1200.0, 0.0, 600.0, 60.0]),
        sources=np.array(["rec", "rec", "rec", "search", "rec"], dtype=object),
    )
    events = rollup(history, weights=np.array([9.0, 2.0, 5.0, 1.0, 1.0]))
    # 7@0 and 7@10 merge; 7@55 is 45 minutes later: a new event; 8 breaks the run of 7s.
    np.testing.assert_array_equal(events.item_ids, [7, 7, 8, 7])
    np.testing.assert_array_equal(events.times, T0 + minute * np.array([0.0, 55.0, 60.0, 61.0]))
    assert events.kinds[0] == KIND_VOCAB["play"]  # play beats click
    np.testing.assert_allclose(events.minutes, [20.0, 0.0, 10.0, 1.0])
    assert events.weights[0] == 2.0  # the weight of the event that gave the strongest kind
    assert events.surfaces[2] == SURFACE_VOCAB["search"]


@pytest.mark.parametrize(
    ("kinds", "strongest"),
    [
        (["thumb_down", "thumb_up"], "thumb_up"),
        (["click", "list_add"], "list_add"),
        (["list_add", "play"], "play"),
        (["thumb_down", "click"], "click"),
    ],
)
def test_rollup_keeps_the_strongest_kind(kinds: list[str], strongest: str) -> None:
    history = History(
        item_ids=np.array([1, 1]),
        times=np.array([T0, T0 + 60.0]),
        kinds=np.array(kinds, dtype=object),
        values=np.zeros(2),
    )
    events = rollup(history)
    assert len(events) == 1
    assert events.kinds[0] == KIND_VOCAB[strongest]


def test_rollup_rejects_unknown_kinds_and_unsorted_times() -> None:
    bad_kind = History(
        item_ids=np.array([1, 2]),
        times=np.array([T0, T0 + 1]),
        kinds=np.array(["play", "watch"], dtype=object),
        values=np.zeros(2),
    )
    with pytest.raises(ValueError, match="got 'watch' at index 1"):
        rollup(bad_kind)
    unsorted = history_of(np.array([1, 2]), gap=-10.0)
    with pytest.raises(ValueError, match="non-decreasing; event 1"):
        rollup(unsorted)
    short = EventContext(devices=np.array(["tv"], dtype=object))
    with pytest.raises(ValueError, match=r"context.devices must have one value per event \(2\)"):
        rollup(history_of(np.array([1, 2])), context=short)


def test_tokens_join_this_steps_context_with_the_previous_steps_action() -> None:
    catalog = make_catalog()
    history = history_of(np.array([100, 101, 999, 102]))  # 999 is not in the catalog
    request = ScoreRequest(
        user_id="u", time=T0 + 10 * HOUR, surface="search", device="tv", local_hour=21.5,
        history=history,
    )  # fmt: skip
    context = EventContext(devices=np.array(["mobile", "tv", "web", None], dtype=object))
    events = rollup(history, context=context)
    tokens = tokens_of(events, catalog, request=request)
    assert len(tokens) == 5  # four events and the request token
    np.testing.assert_array_equal(tokens.prev_item, [PREV_BOS, 0, 1, PREV_UNKNOWN, 2])
    np.testing.assert_array_equal(tokens.target, [0, 1, NO_TARGET, 2, NO_TARGET])
    np.testing.assert_array_equal(tokens.prev_kind, [0] + [KIND_VOCAB["play"]] * 4)
    np.testing.assert_array_equal(
        tokens.device_id, [DEVICE_VOCAB[d] for d in ("mobile", "tv", "web", "<unk>", "tv")]
    )
    assert tokens.surface_id[-1] == SURFACE_VOCAB["search"]
    assert tokens.dense.shape == (5, N_DENSE)
    assert tokens.dense[0, 2] == 0.0  # no gap before the first event
    np.testing.assert_allclose(tokens.dense[1, 2], math.log1p(60.0) / 10.0, rtol=1e-6)
    np.testing.assert_allclose(tokens.dense[1, 7], math.log1p(20.0) / 5.0, rtol=1e-6)
    angle = 2 * math.pi * 21.5 / 24  # the request's local hour, not the UTC one
    np.testing.assert_allclose(tokens.dense[-1, 3:5], [math.sin(angle), math.cos(angle)], atol=1e-6)


def test_collate_pads_on_the_right_with_a_mask() -> None:
    catalog = make_catalog()
    tokens = tokenize_histories(
        [history_of(catalog.item_ids[:5]), history_of(catalog.item_ids[:3])], catalog
    )
    batch = collate(tokens)
    assert batch.prev_item.shape == (2, 5)
    assert batch.dense.shape == (2, 5, N_DENSE)
    assert batch.time.dtype == torch.float64
    assert batch.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch.lengths.tolist() == [5, 3]
    assert batch.target[1, 3:].tolist() == [NO_TARGET, NO_TARGET]
    assert batch.sample_weight[1, 3:].tolist() == [0.0, 0.0]


def test_context_cap_keeps_the_last_tokens_and_ends_on_the_request() -> None:
    catalog = make_catalog()
    request = ScoreRequest(user_id="u", time=T0 + 30 * HOUR, history=history_of(catalog.item_ids))
    batch = tokenize_requests([request], catalog, max_len=4)
    assert batch.prev_item.shape == (1, 4)
    assert batch.prev_item[0].tolist() == [16, 17, 18, 19]
    assert batch.target[0, -1] == NO_TARGET


@pytest.mark.parametrize(
    ("length", "max_len", "stride", "windows"),
    [
        (3, 4, 2, [(0, 3)]),
        (10, 4, 3, [(0, 4), (3, 7), (6, 10)]),
        (11, 4, 3, [(0, 4), (3, 7), (6, 10), (7, 11)]),
        (0, 4, 2, []),
    ],
)
def test_sliding_windows_cover_every_token(
    length: int, max_len: int, stride: int, windows: list[tuple[int, int]]
) -> None:
    assert sliding_windows(length, max_len, stride) == windows


def test_training_windows_slice_tokens_exactly() -> None:
    catalog = make_catalog()
    (tokens,) = tokenize_histories([history_of(catalog.item_ids)], catalog)
    windows = training_windows([tokens], max_len=8, stride=4)
    assert [len(w) for w in windows] == [8] * 4
    np.testing.assert_array_equal(windows[1].prev_item, tokens.prev_item[4:12])
    np.testing.assert_array_equal(windows[1].dense, tokens.dense[4:12])


# ---- model ----------------------------------------------------------------------------------


def test_forward_shapes_and_a_finite_loss() -> None:
    catalog = make_catalog()
    cfg = tiny_config(catalog, n_future=3)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=T0)
    batch = collate(tokenize_histories(cycle_histories(catalog, 3, 10, seed=0), catalog))
    logits, loss = model(batch)
    assert logits is not None and logits.shape == (3, 10, catalog.n_items)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    for name in ("future_heads.0.fc.weight", "future_heads.1.fc.weight", "genre_head.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_seen_items_are_the_previous_items_up_to_each_step() -> None:
    catalog = make_catalog()
    model = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0)
    batch = collate(tokenize_histories([history_of(catalog.item_ids[[4, 9, 2]])], catalog))
    seen = model.seen_items(batch)[0]  # (T, N)
    assert seen.shape == (3, catalog.n_items)
    assert [set(torch.nonzero(row).flatten().tolist()) for row in seen] == [set(), {4}, {4, 9}]


def test_mask_seen_leaves_the_seen_items_out_of_the_training_softmax() -> None:
    """With mask_seen the next-item loss is the cross-entropy over the items each step has not
    yet seen; the full-softmax loss without it differs."""
    catalog = make_catalog()
    torch.manual_seed(0)
    cfg = tiny_config(catalog, genre_weight=0.0, mask_seen=True)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=T0).eval()
    batch = collate(tokenize_histories([history_of(catalog.item_ids[[4, 9, 2, 7]])], catalog))
    with torch.no_grad():
        logits, loss = model(batch)
    assert logits is not None and loss is not None
    rows, expected = [4, 9, 2, 7], []
    for t, target in enumerate(rows):
        keep = [n for n in range(catalog.n_items) if n not in rows[:t]]
        scores = logits[0, t, keep]
        expected.append(-torch.log_softmax(scores, 0)[keep.index(target)])
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    plain = FoundationModel.from_catalog(replace(cfg, mask_seen=False), catalog, age_reference=T0)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, unmasked = plain.eval()(batch)
    assert unmasked is not None and float(unmasked) > float(loss)


def test_negatives_seen_matches_a_direct_comparison_with_repeated_negatives() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        negatives = torch.as_tensor(rng.integers(0, 30, size=int(rng.integers(1, 40))))
        seen = torch.as_tensor(rng.integers(-2, 30, size=(5, int(rng.integers(1, 9)))))
        got = negatives_seen(seen, negatives)
        expected = torch.stack(
            [torch.isin(negatives, row[row >= 0]) for row in seen]
        )  # (G, S), every copy of a repeated negative
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_sampled_softmax_leaves_each_windows_items_out_of_its_negatives() -> None:
    """Two windows of two queries; the loss with ``seen`` equals the cross-entropy computed by
    hand over the negatives that are neither the target nor one of the window's items."""
    torch.manual_seed(3)
    n_items, D = 12, 4
    h, table, bias = torch.randn(4, D), torch.randn(n_items, D), torch.randn(n_items)
    log_q = torch.log_softmax(torch.randn(n_items), 0)
    target = torch.tensor([1, 2, 5, 6])
    weight = torch.tensor([1.0, 0.5, 2.0, 1.0])
    seen = torch.tensor([[0, 1, 2, -1], [4, 5, 6, 7]])  # window 0: items 0-2; window 1: 4-7
    torch.manual_seed(9)
    loss = sampled_softmax_loss(h, table, bias, target, weight, log_q=log_q, n_sampled=64,
                                seen=seen)  # fmt: skip
    torch.manual_seed(9)
    negatives = torch.multinomial(log_q.exp(), 64, replacement=True)
    expected = []
    for m in range(4):
        window = seen[m // 2][seen[m // 2] >= 0]
        keep = negatives[~torch.isin(negatives, window) & (negatives != target[m])]
        logits = torch.cat([(h[m] @ table[target[m]] + bias[target[m]] - log_q[target[m]])[None],
                            h[m] @ table[keep].T + bias[keep] - log_q[keep]])  # fmt: skip
        expected.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(loss, (torch.stack(expected) * weight).sum() / weight.sum())
    torch.manual_seed(9)
    unmasked = sampled_softmax_loss(h, table, bias, target, weight, log_q=log_q, n_sampled=64)
    assert not torch.isclose(unmasked, loss)


def test_mask_seen_with_sampled_softmax_masks_the_windows_items_in_training() -> None:
    catalog = make_catalog()
    cfg = tiny_config(catalog, genre_weight=0.0, mask_seen=True, n_sampled=16)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=T0).train()
    batch = collate(tokenize_histories(cycle_histories(catalog, 3, 8, seed=2), catalog))
    torch.manual_seed(1)
    _, loss = model(batch)
    plain = FoundationModel.from_catalog(replace(cfg, mask_seen=False), catalog, age_reference=T0)
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    _, unmasked = plain.train()(batch)
    assert loss is not None and unmasked is not None and torch.isfinite(loss)
    # the window's items no longer compete as negatives
    assert float(unmasked.detach()) > float(loss.detach())


def test_without_item_metadata_each_item_is_its_id_embedding() -> None:
    catalog = make_catalog()
    model = FoundationModel.from_catalog(
        tiny_config(catalog, item_metadata=False, id_dropout=0.5), catalog, age_reference=T0
    ).train()
    torch.testing.assert_close(model.items(), model.items.id_emb.weight)


def test_scale_item_input_multiplies_only_the_item_part_of_each_token_by_sqrt_d() -> None:
    """The previous-item slot (an item, or the BOS / unknown vector) enters × √d_model; the
    position and context embeddings are added unscaled."""
    catalog = make_catalog()
    torch.manual_seed(0)
    cfg = tiny_config(catalog, item_metadata=False)
    plain = FoundationModel.from_catalog(cfg, catalog, age_reference=T0).eval()
    scaled = FoundationModel.from_catalog(replace(cfg, scale_item_input=True), catalog,
                                          age_reference=T0).eval()  # fmt: skip
    scaled.load_state_dict(plain.state_dict())
    batch = collate(tokenize_histories([history_of(catalog.item_ids[[4, 9, 2, 7]])], catalog))
    table = plain.item_embeddings()
    with torch.no_grad():
        unscaled = plain.encode(batch, table)
        # the plain model given √d × (items and BOS) computes what the scaled model does
        plain.special_items.weight.mul_(math.sqrt(cfg.d_model))
        want = plain.encode(batch, table * math.sqrt(cfg.d_model))
        got = scaled.encode(batch, table)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, unscaled)


def test_mlp_ratio_sets_the_feed_forward_width() -> None:
    catalog = make_catalog()
    model = FoundationModel(tiny_config(catalog, mlp_ratio=1))
    assert model.blocks[0].mlp.fc.weight.shape == (32, 32)
    assert FoundationModel(tiny_config(catalog)).blocks[0].mlp.fc.weight.shape == (128, 32)
    with pytest.raises(ValueError, match="mlp_ratio must be >= 1"):
        tiny_config(catalog, mlp_ratio=0)


def test_without_genre_weight_the_model_has_no_genre_head() -> None:
    catalog = make_catalog()
    model = FoundationModel.from_catalog(tiny_config(catalog, genre_weight=0.0), catalog,
                                         age_reference=T0)  # fmt: skip
    assert model.genre_head is None
    _, loss = model(collate(tokenize_histories(cycle_histories(catalog, 2, 8, seed=0), catalog)))
    assert loss is not None and torch.isfinite(loss)


def test_no_future_leakage_changing_later_events_never_changes_earlier_logits() -> None:
    catalog = make_catalog()
    model = FoundationModel.from_catalog(
        tiny_config(catalog, n_future=2), catalog, age_reference=T0
    )
    model.eval()
    rng = np.random.default_rng(1)
    items = catalog.item_ids[rng.permutation(catalog.n_items)[:12]]
    original = history_of(items)
    t = 6
    changed_items = items.copy()
    changed_items[t + 1 :] = catalog.item_ids[rng.permutation(catalog.n_items)[: 12 - t - 1]]
    changed = History(
        item_ids=changed_items,
        times=np.r_[original.times[: t + 1], original.times[t + 1 :] + 5 * DAY],
        kinds=np.r_[original.kinds[: t + 1], np.array(["click"] * (11 - t), dtype=object)],
        values=np.r_[original.values[: t + 1], np.full(11 - t, 7.0)],
        sources=np.r_[original.sources[: t + 1], np.array(["search"] * (11 - t), dtype=object)],
    )
    requests = [
        ScoreRequest(user_id="u", time=h.times[-1] + HOUR, device="tv", history=h)
        for h in (original, changed)
    ]
    batch = tokenize_requests(requests, catalog, max_len=16)
    logits, _ = model(batch)
    assert logits is not None
    torch.testing.assert_close(logits[0, : t + 1], logits[1, : t + 1])
    assert not torch.allclose(logits[0, t + 1 :], logits[1, t + 1 :])  # the change is visible


def test_sdpa_and_reference_attention_agree() -> None:
    catalog = make_catalog()
    fast = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0).eval()
    reference = FoundationModel(tiny_config(catalog, attention="reference")).eval()
    reference.load_state_dict(fast.state_dict())
    batch = collate(tokenize_histories(cycle_histories(catalog, 4, 12, seed=2), catalog))
    torch.testing.assert_close(fast(batch)[0], reference(batch)[0])


def test_unreleased_items_cannot_be_predicted() -> None:
    catalog = make_catalog()
    release = catalog.release_time.copy()
    release[5] = T0 + 100 * DAY
    late = ItemCatalog(catalog.item_ids, catalog.genres, release, catalog.tokens)
    model = FoundationModel.from_catalog(tiny_config(late), late, age_reference=T0).eval()
    request = ScoreRequest(user_id="u", time=T0 + DAY, history=history_of(late.item_ids[:3]))
    scores = model.next_item_scores(tokenize_requests([request], late, max_len=16))
    assert scores.shape == (1, late.n_items)
    assert scores[0, 5] == float("-inf")
    assert torch.isfinite(scores[0, np.r_[0:5, 6:20]]).all()


def test_engagement_weight_counts_a_full_watch_more_than_a_trailer() -> None:
    kinds = torch.tensor([KIND_VOCAB[k] for k in ("play", "play", "click", "thumb_down")])
    weights = engagement_weight(kinds, torch.tensor([120.0, 5.0, 0.0, 0.0]))
    full, trailer, click, thumb_down = weights.tolist()
    assert full > trailer > click > thumb_down == 0.0


# ---- item representation and cold start -----------------------------------------------------


def test_cold_start_item_embedding_is_close_to_its_genre_neighbours() -> None:
    """Two worlds of genres {0, 1} and {2, 3}; users stay in one. A new item of genres {0, 1},
    never seen in training, gets its embedding from metadata and lands in its genres' world."""
    n_old, n_genres = 24, 4
    genres = np.zeros((n_old + 1, n_genres), dtype=bool)
    genres[np.arange(n_old), np.arange(n_old) % n_genres] = True
    genres[n_old, [0, 1]] = True
    release = np.full(n_old + 1, T0 - 60 * DAY)
    tokens = [(f"genre{i % n_genres}", "world_a" if i % n_genres < 2 else "world_b")
              for i in range(n_old)]  # fmt: skip
    tokens.append(("genre0", "genre1", "world_a"))
    catalog = ItemCatalog(np.arange(n_old + 1), genres, release, tuple(tokens))
    world_a = np.flatnonzero(genres[:n_old, :2].any(axis=1))
    world_b = np.flatnonzero(genres[:n_old, 2:].any(axis=1))
    rng = np.random.default_rng(3)
    histories = [history_of(rng.choice(world, size=24)) for world in (world_a, world_b) * 24]
    last_event = max(h.times[-1] for h in histories)
    release[n_old] = last_event  # released at the end of the training data: age 0
    catalog = ItemCatalog(catalog.item_ids, genres, release, catalog.tokens)

    cfg = tiny_config(catalog, id_dropout=0.3)
    result = train_fm(
        [(h, None) for h in histories], catalog, cfg,
        TrainConfig(epochs=6, batch_size=16, lr=5e-3, progress=False, seed=0),
    )  # fmt: skip
    model = result.model
    table = model.item_embeddings()
    new = table[n_old]
    assert torch.isfinite(new).all()
    assert model.items.id_gate()[n_old].mean() < 0.1  # mostly metadata at age 0
    cosine = torch.nn.functional.cosine_similarity(table[:n_old], new[None], dim=1)
    same, other = cosine[world_a].mean(), cosine[world_b].mean()
    assert same > other + 0.5, (float(same), float(other))


# ---- training, evaluation and checkpoints ---------------------------------------------------


def test_training_on_deterministic_cycles_lowers_the_loss_and_beats_chance() -> None:
    catalog = make_catalog(n_items=20)
    train = [(h, None) for h in cycle_histories(catalog, 32, 40, seed=4)]
    cfg = tiny_config(catalog, n_future=2)
    result = train_fm(
        train, catalog, cfg, TrainConfig(epochs=12, batch_size=16, lr=5e-3, progress=False)
    )
    losses = [m.loss for m in result.metrics]
    assert losses[-1] < 0.5 * losses[0], losses
    held_out = tokenize_histories(cycle_histories(catalog, 8, 16, seed=5), catalog)
    scores = evaluate_next_item(result.model, held_out)
    chance = 1.0 / catalog.n_items
    assert scores["top1"] > 10 * chance, scores  # every target but each user's first
    assert scores["hr@10"] >= scores["top1"]


def test_sample_weights_scale_each_target() -> None:
    """A target with weight 0 contributes nothing: its loss term can change freely."""
    catalog = make_catalog()
    model = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0).eval()
    history = history_of(catalog.item_ids[:6])
    other = History(
        np.r_[history.item_ids[:5], catalog.item_ids[9]], history.times, history.kinds,
        history.values, history.sources,
    )  # fmt: skip
    weights = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    losses = [
        model(collate(tokenize_histories([h], catalog, weights=[weights])))[1]
        for h in (history, other)
    ]
    torch.testing.assert_close(losses[0], losses[1])
    unweighted = model(collate(tokenize_histories([other], catalog)))[1]
    assert not torch.allclose(losses[1], unweighted)


def test_checkpoint_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    catalog = make_catalog()
    path = tmp_path / "fm.pt"
    cfg = tiny_config(catalog, n_future=2, id_dropout=0.2)
    result = train_fm(
        [(h, None) for h in cycle_histories(catalog, 8, 20, seed=6)], catalog, cfg,
        TrainConfig(epochs=2, batch_size=8, progress=False, checkpoint_path=str(path)),
    )  # fmt: skip
    loaded, meta = load_checkpoint(path)
    assert loaded.cfg == result.model.cfg
    assert meta["epoch"] == 1
    request = ScoreRequest(user_id="u", time=T0 + 50 * HOUR, history=history_of(catalog.item_ids))
    view = loaded.catalog_view()  # tokenizing needs nothing but the checkpoint
    np.testing.assert_array_equal(view.item_ids, catalog.item_ids)
    batch = tokenize_requests([request], view, max_len=cfg.max_len, config=cfg.tokenizer())
    torch.testing.assert_close(loaded(batch)[0], result.model(batch)[0], rtol=0.0, atol=0.0)


# ---- sampled softmax ------------------------------------------------------------------------


def test_sampled_softmax_training_runs_and_gives_a_finite_loss() -> None:
    catalog = make_catalog()
    cfg = tiny_config(catalog, n_sampled=8, n_future=2)
    histories = cycle_histories(catalog, 8, 20, seed=7)
    result = train_fm(
        [(h, None) for h in histories], catalog, cfg,
        TrainConfig(epochs=2, batch_size=8, progress=False),
    )  # fmt: skip
    assert all(math.isfinite(m.loss) for m in result.metrics)
    model = result.model.train()
    windows = training_windows(tokenize_histories(histories[:2], catalog), max_len=16, stride=8)
    logits, loss = model(collate(windows))
    assert logits is None and loss is not None and torch.isfinite(loss)
    assert not math.isclose(float(model.item_log_q.exp().std()), 0.0)  # popularity proposal


def test_proposal_power_zero_draws_negatives_uniformly_and_bad_powers_are_refused() -> None:
    catalog = make_catalog()
    cfg = tiny_config(catalog, n_sampled=8)
    histories = cycle_histories(catalog, 8, 20, seed=7)
    result = train_fm(
        [(h, None) for h in histories], catalog, cfg,
        TrainConfig(epochs=1, batch_size=8, progress=False, proposal_power=0.0),
    )  # fmt: skip
    q = result.model.item_log_q.exp()
    torch.testing.assert_close(q, torch.full_like(q, 1.0 / cfg.n_items))
    for bad in (-0.5, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"proposal_power must be in \[0, 1\]"):
            TrainConfig(proposal_power=bad)


def test_sampled_softmax_log_q_correction_matches_its_expectation() -> None:
    """With many samples, the corrected sampled loss of one target approaches
    −(s⁺ − log q⁺) + log(exp(s⁺)/q⁺ + S·Σ_{j≠+} exp(s_j)); without the correction it would not."""
    torch.manual_seed(0)
    n, d, S = 30, 8, 20000
    table, h = torch.randn(n, d), torch.randn(1, d)
    q = torch.distributions.Dirichlet(torch.ones(n)).sample()
    target = torch.tensor([3])
    loss = sampled_softmax_loss(
        h, table, torch.zeros(n), target, torch.ones(1), log_q=q.log(), n_sampled=S
    )
    s = (h @ table.T)[0]
    others = torch.cat([s[:3], s[4:]]).exp().sum()
    expected = -(s[3] - q[3].log()) + torch.log(s[3].exp() / q[3] + S * others)
    torch.testing.assert_close(loss, expected, atol=0.05, rtol=0.0)


# ---- training options -----------------------------------------------------------------------


def test_length_buckets_cover_every_window_once_and_split_ranks_disjointly() -> None:
    from fm_core.train_fm import LengthBucketBatches

    lengths = np.random.default_rng(0).integers(1, 50, size=200)
    one = LengthBucketBatches(lengths, batch_size=8, seed=1, rank=0, world_size=1)
    batches = list(one)
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.2 * np.ptp(lengths)  # a batch holds windows of similar length
    one.set_epoch(1)
    assert list(one) != batches  # another shuffle each epoch
    ranks = [LengthBucketBatches(lengths, batch_size=8, seed=1, rank=r, world_size=2)
             for r in (0, 1)]  # fmt: skip
    shards = [np.concatenate(list(r)) for r in ranks]
    assert len(list(ranks[0])) == len(list(ranks[1])) == len(ranks[0])
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_bucketed_batches_share_one_normalizer_so_each_target_weighs_the_same() -> None:
    """Bucketed batches are divided by Σw over all windows / batches per epoch, not their own."""
    from fm_core.train_fm import _mean_weight_sums

    catalog = make_catalog()
    short = tokenize_histories(cycle_histories(catalog, 6, 3, seed=1), catalog)
    long = tokenize_histories(cycle_histories(catalog, 3, 15, seed=2), catalog)
    windows = short + long
    model = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0)
    fixed = _mean_weight_sums(model, windows, TrainConfig(batch_size=4))
    whole = model.target_weight_sums(collate(windows))
    torch.testing.assert_close(fixed, whole / 3)  # 9 windows in batches of 4: 3 per epoch
    # A batch of short windows holds fewer targets than one of long windows, yet both divide
    # by the same normalizer, so a target's share of the loss does not depend on its batch.
    assert model.target_weight_sums(collate(short[:3]))[0] < fixed[0]
    assert model.target_weight_sums(collate(long))[0] > fixed[0]


def test_learning_rate_warms_up_then_follows_the_cosine() -> None:
    from fm_core.train_fm import lr_factor

    train = TrainConfig(warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(step, total_steps=14, train=train) for step in range(14)]
    np.testing.assert_allclose(factors[:4], [0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(factors[3:]))
    assert factors[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert lr_factor(100, total_steps=14, train=TrainConfig()) == 1.0  # constant by default
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="step")


def test_validation_keeps_the_best_epoch_and_stops_after_patience() -> None:
    catalog = make_catalog()
    scores = iter([0.1, 0.5, 0.2, 0.3, 0.9])  # epoch 1 is best; 2 and 3 do not improve
    kept: list[dict[str, torch.Tensor]] = []

    def validate(model: FoundationModel) -> float:
        kept.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    result = train_fm(
        [(h, None) for h in cycle_histories(catalog, 8, 12, seed=8)], catalog,
        tiny_config(catalog),
        TrainConfig(epochs=5, batch_size=4, patience=2, progress=False, length_buckets=True),
        validate=validate,
    )  # fmt: skip
    assert result.best_epoch == 1
    assert [m.valid for m in result.metrics] == [0.1, 0.5, 0.2, 0.3]  # stopped after epoch 3
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, kept[1][name], rtol=0.0, atol=0.0)


def test_validation_scores_the_model_without_dropout_and_training_resumes_with_it() -> None:
    catalog = make_catalog()
    histories = [(h, None) for h in cycle_histories(catalog, 8, 12, seed=8)]
    batch = tokenize_requests(
        [ScoreRequest(user_id="u", time=T0 + 2 * DAY, history=history_of(catalog.item_ids[:5]))],
        catalog, max_len=16,
    )  # fmt: skip
    seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []

    def validate(model: FoundationModel) -> float:
        # two scorings agree only without dropout (0.5 here would change every score)
        seen.append((model.training, model.next_item_scores(batch), model.next_item_scores(batch)))
        return 0.0

    result = train_fm(
        histories, catalog, tiny_config(catalog, dropout=0.5),
        TrainConfig(epochs=2, batch_size=4, progress=False), validate=validate,
    )  # fmt: skip
    assert [training for training, _, _ in seen] == [False, False]
    for _, first, second in seen:
        torch.testing.assert_close(first, second, rtol=0.0, atol=0.0)
    # the second epoch trained with dropout again: its weights moved after the first validation
    assert len(result.metrics) == 2 and result.metrics[1].loss > 0


def test_freshness_bonus_follows_the_items_age_at_the_request() -> None:
    catalog = make_catalog()
    release = catalog.release_time.copy()
    release[3] = T0 + 2 * DAY - HOUR  # an hour old at the request, the others 60+ days
    fresh = ItemCatalog(catalog.item_ids, catalog.genres, release, catalog.tokens)
    cfg = tiny_config(fresh, freshness_buckets=8)
    model = FoundationModel.from_catalog(cfg, fresh, age_reference=T0).eval()
    request = ScoreRequest(user_id="u", time=T0 + 2 * DAY, history=history_of(fresh.item_ids[:3]))
    batch = tokenize_requests([request], fresh, max_len=16)
    before = model.next_item_scores(batch)
    assert model.freshness is not None
    with torch.no_grad():
        model.freshness[0] = 2.5  # bucket 0: less than a day old
    after = model.next_item_scores(batch)
    assert after[0, 3] - before[0, 3] == pytest.approx(2.5)
    torch.testing.assert_close(after[0, np.r_[0:3, 4:20]], before[0, np.r_[0:3, 4:20]])
    no_time = FoundationModel(tiny_config(fresh, freshness_buckets=8, use_time_features=False))
    assert no_time.freshness is None  # an ablation of time removes freshness too
    _, loss = FoundationModel.from_catalog(
        tiny_config(fresh, freshness_buckets=8, n_sampled=8, n_future=2), fresh, age_reference=T0
    ).train()(collate(tokenize_histories(cycle_histories(fresh, 2, 8, seed=0), fresh)))
    assert loss is not None and torch.isfinite(loss)


def test_serving_scores_without_dropout_in_either_mode_and_keeps_the_mode() -> None:
    catalog = make_catalog()
    batch = tokenize_requests(
        [ScoreRequest(user_id="u", time=T0 + 2 * DAY, history=history_of(catalog.item_ids[:5]))],
        catalog, max_len=16,
    )  # fmt: skip
    cfg = tiny_config(catalog, dropout=0.5)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=T0)
    served = model.eval().next_item_scores(batch)
    model.train()
    for _ in range(2):  # dropout 0.5 would change every score from call to call
        torch.testing.assert_close(model.next_item_scores(batch), served, rtol=0.0, atol=0.0)
        torch.testing.assert_close(
            model.user_embeddings(batch), model.eval().user_embeddings(batch), rtol=0.0, atol=0.0
        )
        model.train()
    assert model.training

"""Incremental training of the foundation model: the warm start onto a grown catalog, and the
item-embedding export aligned to the previous version by an orthogonal Procrustes rotation.
CPU, tiny sizes; the data is built here with numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fm_core.alignment import (
    ItemEmbeddings,
    align_embeddings,
    export_item_embeddings,
    load_item_embeddings,
    procrustes_rotation,
    save_item_embeddings,
)
from fm_core.checkpoint import load_checkpoint, save_checkpoint
from fm_core.model import FMConfig, FoundationModel
from fm_core.tokenize import TokenBatch, tokenize_requests
from fm_core.train_fm import TrainConfig, TrainResult, train_fm
from fm_core.types import History, ItemCatalog, ScoreRequest
from fm_core.warm_start import warm_start_from

pytestmark = pytest.mark.usefixtures("one_torch_thread")


T0 = 1.75e9  # POSIX seconds, mid 2025
DAY = 86400.0
HOUR = 3600.0
N_OLD, N_GENRES = 24, 4
NEW_ROWS = (1, 6, 13, 22)  # new item ids 2r + 1 sit between the old even ids
NEW_RELEASE = T0 + 2 * DAY  # after the previous model's training data


def world_of(genre: int) -> str:
    return "world_a" if genre < 2 else "world_b"


def catalog_of(ids: np.ndarray, genre: np.ndarray, release: np.ndarray) -> ItemCatalog:
    """Items with one genre each and tokens naming the genre and its world (sorted by id)."""
    order = np.argsort(ids)
    ids, genre, release = ids[order], genre[order], release[order]
    genres = np.zeros((ids.size, N_GENRES), dtype=bool)
    genres[np.arange(ids.size), genre] = True
    tokens = tuple((f"genre{g}", world_of(int(g))) for g in genre)
    return ItemCatalog(ids.astype(np.int64), genres, release.astype(np.float64), tokens)


OLD_IDS = 2 * np.arange(N_OLD)
OLD_GENRE = np.arange(N_OLD) % N_GENRES
OLD_CATALOG = catalog_of(OLD_IDS, OLD_GENRE, np.full(N_OLD, T0 - 60 * DAY))
NEW_IDS = 2 * np.array(NEW_ROWS) + 1
NEW_GENRE = np.arange(len(NEW_ROWS)) % N_GENRES
GROWN_CATALOG = catalog_of(
    np.r_[OLD_IDS, NEW_IDS],
    np.r_[OLD_GENRE, NEW_GENRE],
    np.r_[np.full(N_OLD, T0 - 60 * DAY), np.full(NEW_IDS.size, NEW_RELEASE)],
)


def history_of(items: np.ndarray, *, start: float) -> History:
    """Plays of ``items`` (ids), one an hour, 20 minutes each."""
    n = len(items)
    return History(
        item_ids=np.asarray(items, dtype=np.int64),
        times=start + HOUR * np.arange(n, dtype=np.float64),
        kinds=np.array(["play"] * n, dtype=object),
        values=np.full(n, 1200.0),
        sources=np.array(["rec"] * n, dtype=object),
    )


def world_histories(catalog: ItemCatalog, n_users: int, *, start: float, seed: int) -> list:
    """Users who stay in one world (genres {0, 1} or {2, 3}), alternating."""
    rng = np.random.default_rng(seed)
    genre = catalog.genres.argmax(axis=1)
    worlds = [catalog.item_ids[genre < 2], catalog.item_ids[genre >= 2]]
    return [
        (history_of(rng.choice(worlds[u % 2], size=20), start=start), None) for u in range(n_users)
    ]


def tiny_config(catalog: ItemCatalog) -> FMConfig:
    return FMConfig(d_model=16, n_heads=2, n_layers=1, max_len=16, dropout=0.0).with_catalog(
        catalog
    )


TRAIN = TrainConfig(epochs=4, batch_size=16, lr=5e-3, progress=False, seed=0)
OLD_DATA = world_histories(OLD_CATALOG, 32, start=T0, seed=0)
# The new version's data: the same users' worlds, now with the new items, after their release.
NEW_DATA = world_histories(GROWN_CATALOG, 32, start=NEW_RELEASE + HOUR, seed=1)


@pytest.fixture(scope="module")
def previous() -> FoundationModel:
    """The previous version, trained on the old catalog."""
    return train_fm(OLD_DATA, OLD_CATALOG, tiny_config(OLD_CATALOG), TRAIN).model


@dataclass(frozen=True)
class NextVersion:
    warm: TrainResult  # warm-started from ``previous`` and trained on NEW_DATA
    scratch: TrainResult  # trained on NEW_DATA from random weights


@pytest.fixture(scope="module")
def next_version(previous: FoundationModel) -> NextVersion:
    short = TrainConfig(epochs=2, batch_size=16, lr=2e-3, progress=False, seed=1)
    start, _ = warm_start_from(previous, GROWN_CATALOG)
    warm = train_fm(NEW_DATA, GROWN_CATALOG, start.cfg, short, model=start)
    scratch = train_fm(NEW_DATA, GROWN_CATALOG, start.cfg, short)
    return NextVersion(warm=warm, scratch=scratch)


def requests_of(item_lists: list[np.ndarray], *, time: float) -> list[ScoreRequest]:
    return [
        ScoreRequest(user_id=f"u{i}", time=time, device="tv", history=history_of(items, start=T0))
        for i, items in enumerate(item_lists)
    ]


def batch_for(model: FoundationModel, catalog: ItemCatalog, requests: list) -> TokenBatch:
    return tokenize_requests(
        requests, catalog, max_len=model.cfg.max_len, config=model.cfg.tokenizer()
    )


OLD_HISTORIES = [OLD_IDS[[0, 3, 5, 1]], OLD_IDS[[10, 14, 22]], OLD_IDS[[7]], OLD_IDS[:12]]
REQUEST_TIME = NEW_RELEASE + DAY  # every item is released


# ---- warm start -----------------------------------------------------------------------------


def test_a_warm_start_keeps_the_old_items_scores(previous: FoundationModel) -> None:
    warm, report = warm_start_from(previous, GROWN_CATALOG)
    assert (report.n_kept, report.n_added, report.n_removed) == (N_OLD, NEW_IDS.size, 0)
    assert report.n_metadata_changed == 0
    assert warm.cfg == FMConfig(**(vars(previous.cfg) | {"n_items": GROWN_CATALOG.n_items}))
    requests = requests_of(OLD_HISTORIES, time=REQUEST_TIME)
    before = previous.next_item_scores(batch_for(previous, OLD_CATALOG, requests))
    after = warm.next_item_scores(batch_for(warm, GROWN_CATALOG, requests))
    assert after.shape == (len(requests), GROWN_CATALOG.n_items)
    old_columns = torch.as_tensor(GROWN_CATALOG.rows(OLD_IDS))
    torch.testing.assert_close(after[:, old_columns], before, atol=1e-5, rtol=0.0)
    new_columns = torch.as_tensor(GROWN_CATALOG.rows(NEW_IDS))
    assert torch.isfinite(after[:, new_columns]).all()


def test_old_rows_are_carried_by_item_id_when_new_ids_interleave(
    previous: FoundationModel,
) -> None:
    warm, _ = warm_start_from(previous, GROWN_CATALOG)
    old_rows, new_rows = OLD_CATALOG.rows(OLD_IDS), GROWN_CATALOG.rows(OLD_IDS)
    assert not np.array_equal(old_rows, new_rows)  # the ids really interleave
    for name in ("items.id_emb.weight", "item_bias"):
        torch.testing.assert_close(
            warm.get_parameter(name)[new_rows], previous.get_parameter(name)[old_rows]
        )
    np.testing.assert_array_equal(warm.items.item_ids.numpy(), GROWN_CATALOG.item_ids)
    np.testing.assert_array_equal(warm.items.release_time.numpy(), GROWN_CATALOG.release_time)
    assert float(warm.item_log_q.exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_training_continues_from_the_warm_start_and_starts_ahead_of_scratch(
    next_version: NextVersion,
) -> None:
    warm, scratch = next_version.warm, next_version.scratch
    assert all(np.isfinite(m.loss) for m in warm.metrics)
    assert warm.metrics[0].loss < scratch.metrics[0].loss - 0.1, (
        [m.loss for m in warm.metrics], [m.loss for m in scratch.metrics],
    )  # fmt: skip
    scores = warm.model.next_item_scores(
        batch_for(warm.model, GROWN_CATALOG, requests_of(OLD_HISTORIES, time=REQUEST_TIME))
    )
    assert torch.isfinite(scores).all()


def test_new_items_start_near_their_metadata_neighbours(previous: FoundationModel) -> None:
    """A new item's ID row is the similarity-weighted mean of its metadata neighbours' rows:
    here its genre's six old items, which share its metadata exactly (cosine 1)."""
    warm, report = warm_start_from(previous, GROWN_CATALOG, neighbours=N_OLD // N_GENRES)
    assert report.neighbours == N_OLD // N_GENRES
    assert report.mean_neighbour_similarity == pytest.approx(1.0, abs=1e-5)
    old_id = previous.items.id_emb.weight.detach()
    new_id = warm.items.id_emb.weight.detach()
    cosine = torch.nn.functional.cosine_similarity
    for item, genre in zip(NEW_IDS, NEW_GENRE, strict=True):
        row = int(GROWN_CATALOG.rows(np.array([item]))[0])
        same = genre == OLD_GENRE
        torch.testing.assert_close(new_id[row], old_id[same].mean(dim=0))
        torch.testing.assert_close(warm.item_bias[row], previous.item_bias[same].mean())
        similarity = cosine(old_id, new_id[row][None], dim=1)  # (N_OLD,)
        others = similarity[torch.as_tensor(~same)]
        assert similarity[torch.as_tensor(same)].mean() > others.mean() + 0.3
        other_world = torch.as_tensor((OLD_GENRE < 2) != (genre < 2))
        assert similarity[torch.as_tensor(same)].min() > similarity[other_world].max()


@pytest.mark.parametrize("years_later", [0, 1], ids=["metadata-led", "id-led"])
def test_before_any_training_new_items_are_scored_for_the_users_of_their_world(
    previous: FoundationModel, years_later: int
) -> None:
    """Cold new items reach the right users at once: for a user of world A, the warm model
    scores world A's new items above world B's and above world B's old items. At the previous
    age reference a new item's representation is mostly metadata; a year later the age gate
    leans on its ID row, so that case checks the neighbour initialization itself."""
    reference = float(previous.items.age_reference) + 365 * DAY * years_later
    warm, _ = warm_start_from(previous, GROWN_CATALOG, age_reference=reference)
    new_rows = GROWN_CATALOG.rows(NEW_IDS)
    assert (warm.items.id_gate()[new_rows].mean() > 0.5) == bool(years_later)
    world_a = OLD_IDS[OLD_GENRE < 2]
    requests = requests_of([world_a[[0, 3, 5, 8]], world_a[[1, 2, 9]]], time=REQUEST_TIME)
    scores = warm.next_item_scores(batch_for(warm, GROWN_CATALOG, requests))
    new_a = torch.as_tensor(GROWN_CATALOG.rows(NEW_IDS[NEW_GENRE < 2]))
    new_b = torch.as_tensor(GROWN_CATALOG.rows(NEW_IDS[NEW_GENRE >= 2]))
    old_b = torch.as_tensor(GROWN_CATALOG.rows(OLD_IDS[OLD_GENRE >= 2]))
    assert (scores[:, new_a].min(dim=1).values > scores[:, new_b].max(dim=1).values).all()
    assert (scores[:, new_a].min(dim=1).values > scores[:, old_b].max(dim=1).values).all()


def test_with_few_neighbours_new_items_still_land_in_their_world(
    previous: FoundationModel,
) -> None:
    """Three neighbours (fewer than a genre's six items): a year on, when the age gate leans on
    the ID row, the new item's whole representation is nearer every old item of its world (the
    users' clusters) than any old item of the other world."""
    reference = float(previous.items.age_reference) + 365 * DAY
    warm, report = warm_start_from(previous, GROWN_CATALOG, neighbours=3, age_reference=reference)
    assert report.neighbours == 3
    table = torch.nn.functional.normalize(warm.item_embeddings(), dim=1)
    cosine = table[GROWN_CATALOG.rows(NEW_IDS)] @ table[GROWN_CATALOG.rows(OLD_IDS)].T
    same_world = torch.as_tensor((NEW_GENRE[:, None] < 2) == (OLD_GENRE[None, :] < 2))
    for row in range(NEW_IDS.size):
        assert cosine[row][same_world[row]].min() > cosine[row][~same_world[row]].max()


def test_neighbour_search_in_blocks_gives_the_same_rows(
    previous: FoundationModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six neighbours: a genre's old items tie at cosine 1, so the set is the same either way."""
    whole, _ = warm_start_from(previous, GROWN_CATALOG, neighbours=6)
    monkeypatch.setattr("fm_core.warm_start._COSINE_BLOCK_CELLS", N_OLD)  # one new item a block
    blocked, _ = warm_start_from(previous, GROWN_CATALOG, neighbours=6)
    torch.testing.assert_close(blocked.state_dict(), whole.state_dict(), rtol=0.0, atol=1e-6)


def test_removed_items_raise_unless_allowed(previous: FoundationModel) -> None:
    gone = OLD_IDS[[3, 17]]
    keep = ~np.isin(GROWN_CATALOG.item_ids, gone)
    shrunk = ItemCatalog(
        GROWN_CATALOG.item_ids[keep], GROWN_CATALOG.genres[keep],
        GROWN_CATALOG.release_time[keep],
        tuple(t for t, k in zip(GROWN_CATALOG.tokens, keep, strict=True) if k),
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"missing 2 item id\(s\) of the previous model: \[6, 34\]"
    ):
        warm_start_from(previous, shrunk)
    warm, report = warm_start_from(previous, shrunk, allow_removed=True)
    assert (report.n_kept, report.n_added, report.n_removed) == (N_OLD - 2, NEW_IDS.size, 2)
    requests = requests_of([OLD_IDS[[0, 1, 2]], OLD_IDS[[10, 11]]], time=REQUEST_TIME)
    before = previous.next_item_scores(batch_for(previous, OLD_CATALOG, requests))
    after = warm.next_item_scores(batch_for(warm, shrunk, requests))
    kept = np.setdiff1d(OLD_IDS, gone)
    torch.testing.assert_close(
        after[:, shrunk.rows(kept)], before[:, OLD_CATALOG.rows(kept)], atol=1e-5, rtol=0.0
    )


def test_a_moved_age_reference_ages_the_items(previous: FoundationModel) -> None:
    later = float(previous.items.age_reference) + 200 * DAY
    warm, _ = warm_start_from(previous, GROWN_CATALOG, age_reference=later)
    assert float(warm.items.age_reference) == later
    old_rows, new_rows = OLD_CATALOG.rows(OLD_IDS), GROWN_CATALOG.rows(OLD_IDS)
    gate_before = previous.items.id_gate()[old_rows].mean()
    assert warm.items.id_gate()[new_rows].mean() > gate_before  # older items lean on their IDs


def test_checkpoint_round_trip_of_a_warm_started_model(
    previous: FoundationModel, tmp_path: Path
) -> None:
    warm, _ = warm_start_from(previous, GROWN_CATALOG)
    path = save_checkpoint(tmp_path / "warm.pt", warm, meta={"warm_start_of": "v1"})
    loaded, meta = load_checkpoint(path)
    assert loaded.cfg == warm.cfg and meta == {"warm_start_of": "v1"}
    view = loaded.catalog_view()
    np.testing.assert_array_equal(view.item_ids, GROWN_CATALOG.item_ids)
    requests = requests_of([*OLD_HISTORIES, NEW_IDS], time=REQUEST_TIME)
    torch.testing.assert_close(
        loaded.next_item_scores(batch_for(loaded, view, requests)),
        warm.next_item_scores(batch_for(warm, GROWN_CATALOG, requests)),
        rtol=0.0, atol=0.0,
    )  # fmt: skip


# ---- Procrustes alignment -------------------------------------------------------------------


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def test_procrustes_recovers_a_known_rotation_exactly() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(0, 100, 2)
    current = rng.normal(size=(ids.size, 8)).astype(np.float32)
    turn = random_rotation(8, rng)
    previous = ItemEmbeddings(ids, (current @ turn).astype(np.float32), np.eye(8, dtype=np.float32))
    np.testing.assert_allclose(procrustes_rotation(current, previous.vectors), turn, atol=1e-5)
    export = align_embeddings(ids, current, previous=previous)
    assert export.n_shared == ids.size
    assert export.residual < 1e-5
    assert export.residual_unaligned > 0.5
    np.testing.assert_allclose(export.vectors, previous.vectors, atol=1e-5)
    np.testing.assert_allclose(export.rotation @ export.rotation.T, np.eye(8), atol=1e-5)


def test_alignment_uses_only_shared_ids_and_rotates_every_item() -> None:
    """New items (not in the previous export) are rotated too; ids match by value, not row."""
    rng = np.random.default_rng(1)
    prev_ids, ids = np.arange(0, 60, 2), np.arange(0, 80)  # the new version adds odd ids
    current = rng.normal(size=(ids.size, 6)).astype(np.float32)
    turn = random_rotation(6, rng)
    shared_rows = np.searchsorted(ids, prev_ids)
    prev = ItemEmbeddings(
        prev_ids, (current[shared_rows] @ turn).astype(np.float32), np.eye(6, dtype=np.float32)
    )
    export = align_embeddings(ids, current, previous=prev)
    assert export.n_shared == prev_ids.size and export.residual < 1e-5
    np.testing.assert_allclose(export.vectors, current @ turn, atol=1e-5)


def test_scores_are_preserved_when_users_are_rotated_too(previous: FoundationModel) -> None:
    rng = np.random.default_rng(2)
    base = export_item_embeddings(previous, previous=None)
    np.testing.assert_array_equal(base.rotation, np.eye(previous.cfg.d_model))
    turned = ItemEmbeddings(
        base.item_ids, base.vectors @ random_rotation(base.dim, rng).astype(np.float32),
        base.rotation,
    )  # fmt: skip
    export = export_item_embeddings(previous, previous=turned)
    assert export.residual < 1e-4
    batch = batch_for(previous, OLD_CATALOG, requests_of(OLD_HISTORIES, time=REQUEST_TIME))
    users = previous.user_embeddings(batch).numpy()  # (B, D)
    items = previous.item_embeddings().numpy()  # (N, D)
    aligned_scores = export.rotate_users(users) @ export.vectors.T
    np.testing.assert_allclose(aligned_scores, users @ items.T, atol=1e-5)
    assert not np.allclose(users @ export.vectors.T, users @ items.T, atol=1e-3)  # R matters


def test_alignment_after_a_warm_start_shrinks_the_residual(
    previous: FoundationModel, next_version: NextVersion
) -> None:
    prev_export = export_item_embeddings(previous, previous=None)
    warm_export = export_item_embeddings(next_version.warm.model, previous=prev_export)
    assert warm_export.n_shared == N_OLD
    assert np.isfinite(warm_export.residual) and warm_export.residual > 0.0
    assert warm_export.residual < warm_export.residual_unaligned
    # The warm start keeps the space: even aligned, a model trained from scratch is farther.
    scratch_export = export_item_embeddings(next_version.scratch.model, previous=prev_export)
    assert warm_export.residual < scratch_export.residual


def test_export_save_load_round_trip(previous: FoundationModel, tmp_path: Path) -> None:
    prev_export = export_item_embeddings(previous, previous=None)
    export = align_embeddings(
        prev_export.item_ids, prev_export.vectors[:, ::-1].copy(), previous=prev_export
    )
    path = save_item_embeddings(tmp_path / "exports" / "v2.npz", export)
    assert path.exists() and not path.with_name("v2.npz.tmp").exists()
    loaded = load_item_embeddings(path)
    np.testing.assert_array_equal(loaded.item_ids, export.item_ids)
    np.testing.assert_array_equal(loaded.vectors, export.vectors)
    np.testing.assert_array_equal(loaded.rotation, export.rotation)
    assert (loaded.residual, loaded.residual_unaligned, loaded.n_shared) == (
        export.residual, export.residual_unaligned, export.n_shared,
    )  # fmt: skip
    first = load_item_embeddings(save_item_embeddings(tmp_path / "v1.npz", prev_export))
    assert np.isnan(first.residual) and first.n_shared == 0


# ---- bad inputs -----------------------------------------------------------------------------


def small_model() -> FoundationModel:
    return FoundationModel.from_catalog(tiny_config(OLD_CATALOG), OLD_CATALOG, age_reference=T0)


def export_of(ids: list[int], dim: int) -> ItemEmbeddings:
    vectors = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
    return ItemEmbeddings(np.array(ids), vectors, np.eye(dim, dtype=np.float32))


def without_old_ids() -> None:
    missing = catalog_of(OLD_IDS[2:], OLD_GENRE[2:], np.full(N_OLD - 2, T0))
    warm_start_from(small_model(), missing)


def other_genres() -> None:
    catalog = OLD_CATALOG
    wider = ItemCatalog(
        catalog.item_ids, np.c_[catalog.genres, np.zeros(N_OLD, bool)], catalog.release_time
    )
    warm_start_from(small_model(), wider)


def bad_npz(tmp: Path) -> None:
    path = tmp / "broken.npz"
    np.savez(path, item_ids=np.arange(3))
    load_item_embeddings(path)


BAD_INPUTS: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("old ids missing", lambda _: without_old_ids(), ValueError,
     r"catalog is missing 2 item id\(s\) of the previous model: \[0, 2\]"),
    ("genre columns", lambda _: other_genres(), ValueError,
     "catalog.genres must have 4 genre columns, as the previous model; got 5"),
    ("no neighbours", lambda _: warm_start_from(small_model(), GROWN_CATALOG, neighbours=0),
     ValueError, "neighbours must be >= 1; got 0"),
    ("nothing shared", lambda _: warm_start_from(
        small_model(), catalog_of(np.array([1, 3]), np.array([0, 1]), np.full(2, T0)),
        allow_removed=True), ValueError, "shares no item id with the previous model"),
    ("not a model", lambda _: warm_start_from("v1.pt", GROWN_CATALOG),  # type: ignore[arg-type]
     TypeError, "previous must be a FoundationModel; got str"),
    ("dimension mismatch", lambda _: align_embeddings(
        np.arange(5), np.zeros((5, 4)), previous=export_of([0, 1, 2], 8)),
     ValueError, "previous export has dimension 8; the new vectors have 4"),
    ("no shared ids", lambda _: align_embeddings(
        np.arange(5), np.ones((5, 8)), previous=export_of([10, 11], 8)),
     ValueError, "previous export shares no item id with the new one"),
    ("procrustes shapes", lambda _: procrustes_rotation(np.zeros((5, 3)), np.zeros((4, 3))),
     ValueError, r"matched \(rows, dim\) matrices of one shape; got \(5, 3\) and \(4, 3\)"),
    ("procrustes non-finite", lambda _: procrustes_rotation(
        np.full((2, 2), np.nan), np.zeros((2, 2))), ValueError, "must be finite"),
    ("unsorted export ids", lambda _: export_of([3, 1, 2], 4), ValueError,
     "item_ids must be a 1-D array of sorted, unique ids"),
    ("export rows", lambda _: ItemEmbeddings(np.arange(3), np.zeros((2, 4)), np.eye(4)),
     ValueError, r"one row per item id \(3\); got shape \(2, 4\)"),
    ("export rotation", lambda _: ItemEmbeddings(np.arange(2), np.zeros((2, 4)), np.eye(3)),
     ValueError, r"rotation must be \(4, 4\); got shape \(3, 3\)"),
    ("non-finite export", lambda _: ItemEmbeddings(
        np.arange(1), np.full((1, 2), np.inf), np.eye(2)), ValueError, "vectors must be finite"),
    ("user dimension", lambda _: export_of([0, 1], 4).rotate_users(np.zeros((3, 5))),
     ValueError, r"users must be \(n_users, 4\); got shape \(3, 5\)"),
    ("zero previous", lambda _: align_embeddings(
        np.arange(2), np.ones((2, 2)),
        previous=ItemEmbeddings(np.arange(2), np.zeros((2, 2)), np.eye(2))),
     ValueError, "previous vectors of the shared items are all zero"),
    ("not an export", bad_npz, ValueError, r"not an item-embedding export: missing \['vectors'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_inputs_raise_clear_errors(
    call: Callable[[Path], object], error: type[Exception], message: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=message):
        call(tmp_path)


def test_the_package_exports_the_incremental_names() -> None:
    import fm_core

    assert fm_core.warm_start_from is warm_start_from
    assert fm_core.export_item_embeddings is export_item_embeddings
    assert fm_core.ItemEmbeddings is ItemEmbeddings

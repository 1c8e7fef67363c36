"""The FM's FLOPs count against PyTorch's own FLOP counter on tiny configs, and the peak table."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fm_core.flops import StepShape, forward_flops, peak_flops, teacher_flops, training_flops
from fm_core.model import Distillation, FMConfig, FoundationModel
from fm_core.tokenize import collate, tokenize_histories, training_windows
from tests.fm_core.test_fm_model import cycle_histories, make_catalog

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch_and_model(**overrides: object) -> tuple[FoundationModel, object]:
    catalog = make_catalog(n_items=30, n_genres=3)
    base = {"d_model": 16, "n_heads": 2, "n_layers": 2, "max_len": 12, "dropout": 0.0,
            "attention": "reference"}  # fmt: skip
    cfg = FMConfig(**(base | overrides)).with_catalog(catalog)  # type: ignore[arg-type]
    histories = cycle_histories(catalog, n_users=5, length=9, seed=1)
    first = histories[0]
    histories[0] = type(first)(first.item_ids[:4], first.times[:4], first.kinds[:4],
                               first.values[:4], first.sources[:4])  # fmt: skip
    tokens = tokenize_histories(histories, catalog, config=cfg.tokenizer())
    windows = training_windows(tokens, max_len=cfg.max_len, stride=cfg.max_len)
    torch.manual_seed(0)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=2e9).train()
    return model, collate(windows)


def _shape(model: FoundationModel, batch: object, *, all_tokens: bool = False) -> StepShape:
    target = batch.target  # type: ignore[attr-defined]
    counts = [int((target[:, k:] >= 0).sum()) for k in range(model.cfg.n_future)]
    return StepShape(batch=target.shape[0], tokens=target.shape[1], targets=counts,
                     score_all_tokens=all_tokens)  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "all_tokens"),
    [
        ({"n_sampled": 7, "genre_weight": 0.0, "item_metadata": False, "mlp_ratio": 1}, False),
        ({"n_sampled": 7, "n_future": 3, "future_heads": True}, False),
        ({"n_future": 3, "future_heads": False, "genre_weight": 0.1}, True),
        ({"mlp_ratio": 2}, False),
    ],
)
def test_forward_flops_equal_torchs_count_of_the_training_forward(
    overrides: dict[str, object], all_tokens: bool
) -> None:
    model, batch = _batch_and_model(**overrides)
    with FlopCounterMode(display=False) as counter:
        model(batch, return_logits=all_tokens)
    assert forward_flops(model.cfg, _shape(model, batch, all_tokens=all_tokens)) == (
        counter.get_total_flops()
    )


@pytest.mark.parametrize("n_sampled", [7, 0])
def test_teacher_flops_are_what_distillation_adds_to_the_forward(n_sampled: int) -> None:
    """A teacher of another width, with future and genre heads and its own negatives count,
    computes only its trunk and its next-item head over the student's candidates."""
    model, batch = _batch_and_model(n_sampled=n_sampled, genre_weight=0.0)
    teacher, _ = _batch_and_model(d_model=8, n_sampled=3, n_future=3, future_heads=True)
    distill = Distillation((teacher,))
    counted = []
    for extra in ({}, {"distill": distill}):
        with FlopCounterMode(display=False) as counter:
            model(batch, return_logits=False, **extra)  # type: ignore[arg-type]
        counted.append(counter.get_total_flops())
    shape = _shape(model, batch)
    assert teacher_flops(distill, model.cfg, shape) == counted[1] - counted[0] > 0
    assert teacher_flops(None, model.cfg, shape) == 0


def test_training_flops_are_three_forwards_and_near_torchs_forward_and_backward() -> None:
    model, batch = _batch_and_model(n_sampled=7, item_metadata=False, genre_weight=0.0)
    shape = _shape(model, batch)
    with FlopCounterMode(display=False) as counter:
        _, loss = model(batch, return_logits=False)
        loss.backward()
    assert training_flops(model.cfg, shape) == 3 * forward_flops(model.cfg, shape)
    # the inputs' dense projection has no input gradient, so torch's count is a little lower
    assert counter.get_total_flops() == pytest.approx(training_flops(model.cfg, shape), rel=0.05)


def test_hand_count_of_one_layer_without_heads() -> None:
    cfg = FMConfig(n_items=10, n_genres=1, d_model=4, n_heads=1, n_layers=1, max_len=3,
                   mlp_ratio=1, n_sampled=5, genre_weight=0.0, item_metadata=False)  # fmt: skip
    # B=2, T=3: n=6 tokens; qkv 6·6·16, out 2·6·16, MLP 4·6·16, attention 4·2·9·4,
    # dense input 2·6·N_DENSE·4, negatives 2·6 positions·5·4 (4 of them with a target)
    from fm_core.tokenize import N_DENSE

    hand = (
        6 * 6 * 16 + 2 * 6 * 16 + 4 * 6 * 16 + 4 * 2 * 9 * 4 + 2 * 6 * N_DENSE * 4 + 2 * 6 * 5 * 4
    )
    assert forward_flops(cfg, StepShape(batch=2, tokens=3, targets=[4])) == hand


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756.0e12),
        ("NVIDIA A100-SXM4-80GB", 312.0e12),
        ("NVIDIA GeForce GTX 1080", None),
        (None, None),
    ],
)
def test_peak_is_known_only_for_listed_cards(name: str | None, peak: float | None) -> None:
    assert peak_flops(name) == peak


def test_a_window_mix_counts_each_batch_from_its_own_shape() -> None:
    cfg = FMConfig(n_items=10, d_model=8, n_heads=2, max_len=8, n_sampled=4, genre_weight=0.0,
                   item_metadata=False)  # fmt: skip
    short = forward_flops(cfg, StepShape(batch=4, tokens=2, targets=[8]))
    long = forward_flops(cfg, StepShape(batch=4, tokens=8, targets=[32]))
    assert long > 4 * short  # attention grows with T²

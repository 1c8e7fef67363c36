"""The training step: the same losses as the trainer that batched through a DataLoader, the
same steps from windows resident on the device as from windows collated per batch, no reads of
the device per step, and the FLOPs it counts. CPU, tiny sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fm_core.flops import StepShape, training_flops
from fm_core.model import FoundationModel
from fm_core.tokenize import collate, tokenize_histories, training_windows
from fm_core.train_fm import TrainConfig, train_fm
from fm_core.types import History
from fm_core.window_store import WindowStore
from tests.fm_core.test_fm_model import cycle_histories, make_catalog, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Per-step losses of two epochs of these configs (seed 5), recorded from the trainer as it was
# when it batched windows through a torch DataLoader and read every step's loss on the host.
RECORDED = {
    "sampled_buckets": [2.475531816482544, 1.5960218906402588, 3.116445541381836,
                        2.3755900859832764, 1.500096082687378, 2.933730125427246],
    "full_top1": [4.621674537658691, 4.560212135314941, 4.536374568939209, 4.48151159286499,
                  4.511030197143555, 4.51791524887085],
}  # fmt: skip
RECORDED_TOP1 = [0.06329113924050633, 0.0759493670886076]
CASES = {
    "sampled_buckets": ({"n_sampled": 8, "dropout": 0.1}, {"length_buckets": True}),
    "full_top1": ({"n_future": 2, "dropout": 0.1}, {"train_top1": True}),
}


def _data(n_users: int = 12) -> tuple[Any, list[History]]:
    catalog = make_catalog(n_items=20)
    histories = cycle_histories(catalog, n_users=n_users, length=10, seed=3)
    cut = [4 + i % 7 for i in range(n_users)]  # windows of several lengths
    return catalog, [
        History(h.item_ids[:c], h.times[:c], h.kinds[:c], h.values[:c], h.sources[:c])
        for h, c in zip(histories, cut, strict=True)
    ]


def _train(case: str, **train: Any) -> Any:
    catalog, histories = _data()
    model_overrides, train_overrides = CASES[case]
    cfg = tiny_config(catalog, **model_overrides)
    base = {"epochs": 2, "batch_size": 4, "lr": 3e-3, "progress": False, "seed": 5}
    config = TrainConfig(**(base | train_overrides | train))
    return train_fm([(h, None) for h in histories], catalog, cfg, config)


def _steps(result: Any) -> list[float]:
    return [loss for m in result.metrics for loss in m.step_losses]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("resident", [False, True])
def test_step_losses_equal_the_recorded_ones_from_host_and_from_device_windows(
    case: str, resident: bool
) -> None:
    result = _train(case, resident_data=resident)
    np.testing.assert_allclose(_steps(result), RECORDED[case], rtol=0, atol=1e-6)
    epochs = [float(np.mean(RECORDED[case][i * 3 : i * 3 + 3])) for i in range(2)]
    np.testing.assert_allclose([m.loss for m in result.metrics], epochs, atol=1e-6)
    if case == "full_top1":
        np.testing.assert_allclose([m.top1 for m in result.metrics], RECORDED_TOP1, atol=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        {"n_future": 3},  # with the genre head and unreleased items masked, as by default
        {"n_future": 2, "mask_seen": True, "freshness_buckets": 4},
        {"n_future": 1, "genre_weight": 0.0, "mask_unreleased": False},
    ],
)
@pytest.mark.parametrize("return_logits", [True, False])
def test_every_position_gives_the_gathered_targets_loss_and_gradients(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], return_logits: bool
) -> None:
    # the CUDA path (every query position, weight 0 without a target) against the CPU's
    # (a boolean gather of the valid targets), both run here on the CPU
    catalog, histories = _data()
    cfg = tiny_config(catalog, **overrides)
    tokens = tokenize_histories(histories, catalog, config=cfg.tokenizer())
    batch = collate(training_windows(tokens, max_len=6, stride=3)[:8])
    batch.sample_weight[1] = 0.0  # a user whose events carry no weight
    batch.sample_weight[2, 1] = 3.0
    batch.sample_weight[batch.target < 0] = 5.0  # a weight without a target counts for nothing
    assert (batch.target < 0).any() and (batch.target >= 0).any()  # padding and targets
    torch.manual_seed(0)
    model = FoundationModel(cfg).train()
    results = []
    for every in (False, True):
        monkeypatch.setattr(FoundationModel, "every_position", staticmethod(lambda h, e=every: e))
        model.zero_grad()
        torch.manual_seed(1)  # the same ID drop-out in both
        _, loss = model(batch, return_logits=return_logits)
        assert loss is not None
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((loss.detach(), grads))
    (gathered, gathered_grads), (dense, dense_grads) = results
    torch.testing.assert_close(dense, gathered, rtol=1e-6, atol=1e-6)
    assert len(dense_grads) == len(gathered_grads)
    for d, g in zip(dense_grads, gathered_grads, strict=True):
        torch.testing.assert_close(d, g, rtol=1e-5, atol=1e-6)


def test_a_window_s_seen_items_are_its_earlier_previous_items() -> None:
    catalog, histories = _data()
    cfg = tiny_config(catalog, mask_seen=True)
    tokens = tokenize_histories(histories, catalog, config=cfg.tokenizer())
    batch = collate(training_windows(tokens, max_len=6, stride=3)[:8])
    seen = FoundationModel(cfg).seen_items(batch)
    prev = batch.prev_item.numpy()
    expected = np.zeros(seen.shape, dtype=bool)
    for b, t in np.ndindex(prev.shape):
        for earlier in prev[b, : t + 1]:
            if earlier >= 0:
                expected[b, t, earlier] = True
    np.testing.assert_array_equal(seen.numpy(), expected)
    assert expected.any() and not expected.all()


def test_a_stored_batch_is_the_collated_batch() -> None:
    catalog, histories = _data()
    cfg = tiny_config(catalog)
    tokens = tokenize_histories(histories, catalog, config=cfg.tokenizer())
    windows = training_windows(tokens, max_len=6, stride=3)
    store = WindowStore(windows, torch.device("cpu"), max_shift=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = rng.choice(len(windows), size=4, replace=False)
        got, want = store.batch(rows), collate([windows[i] for i in rows])
        for name in vars(want):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=0)
        counts = [sum(int((windows[i].target[k:] >= 0).sum()) for i in rows) for k in (0, 1)]
        assert store.batch_targets(rows).tolist() == counts


def _reads_of_the_device(
    monkeypatch: pytest.MonkeyPatch, batch_size: int, ema_decay: float = 0.0
) -> int:
    calls = [0]
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, _original: Any = original) -> Any:
            calls[0] += 1
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    _train("full_top1", batch_size=batch_size, epochs=1, log_every=10**6, ema_decay=ema_decay)
    monkeypatch.undo()
    return calls[0]


@pytest.mark.parametrize("ema_decay", [0.0, 0.99])  # also with the weights' moving average
def test_the_step_never_reads_the_device(monkeypatch: pytest.MonkeyPatch, ema_decay: float) -> None:
    # four times the steps, the same number of reads: they happen per epoch, not per step
    few = _reads_of_the_device(monkeypatch, 8, ema_decay)
    many = _reads_of_the_device(monkeypatch, 2, ema_decay)
    assert few == many


def test_epoch_flops_are_the_sum_of_the_batches_counted_from_their_shapes() -> None:
    catalog, histories = _data()
    cfg = tiny_config(catalog, n_sampled=8)
    windows = training_windows(
        tokenize_histories(histories, catalog, config=cfg.tokenizer()), max_len=16, stride=8
    )
    config = TrainConfig(epochs=1, batch_size=len(windows), progress=False, train_top1=False)
    result = train_fm([(h, None) for h in histories], catalog, cfg, config)
    batch = collate(windows)
    shape = StepShape(batch=len(windows), tokens=batch.target.shape[1],
                      targets=[int((batch.target >= 0).sum())])  # fmt: skip
    (epoch,) = result.metrics
    assert epoch.steps == 1 and epoch.seconds > 0
    assert epoch.flops == training_flops(result.model.cfg, shape)

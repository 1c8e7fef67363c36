"""The moving average of the FM's weights: its arithmetic by hand, its refusals, and the
trainer validating, keeping and returning the average."""

from __future__ import annotations

import pytest
import torch

from fm_core.model import FoundationModel
from fm_core.train_fm import TrainConfig, train_fm
from fm_core.weight_average import WeightAverage
from tests.fm_core.test_fm_model import cycle_histories, make_catalog, tiny_config


def _linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.constant_(layer.weight, value)
    return layer


def test_the_average_follows_the_warmed_up_decay_by_hand() -> None:
    model = _linear(0.0)
    average = WeightAverage(model, decay=0.3)
    expected = 0.0
    decays = []
    for step, value in enumerate([4.0, 8.0, -2.0, 6.0], start=1):
        torch.nn.init.constant_(model.weight, value)
        d = min(0.3, (1 + step) / (10 + step))  # 2/11, 3/12, then the cap 0.3 < 4/13
        decays.append(average.current_decay())
        average.update(model)
        expected = d * expected + (1 - d) * value
        assert average.module.weight[0, 0].item() == pytest.approx(expected, abs=1e-6)
    assert decays == pytest.approx([2 / 11, 3 / 12, 0.3, 0.3])
    assert average.updates == 4
    assert not average.module.training and not average.module.weight.requires_grad
    assert model.weight[0, 0].item() == 6.0  # the trained model is left alone


def test_the_debiased_average_is_the_normalized_exponential_mean_of_every_iterate() -> None:
    model = _linear(100.0)  # the initialization never counts
    average = WeightAverage(model, decay=0.9, warmup="debiased")
    values = [4.0, 8.0, -2.0, 6.0, 1.0]
    for t, value in enumerate(values, start=1):
        torch.nn.init.constant_(model.weight, value)
        average.update(model)
        weights = [0.9 ** (t - s) for s in range(1, t + 1)]
        expected = sum(w * v for w, v in zip(weights, values, strict=False)) / sum(weights)
        assert average.module.weight[0, 0].item() == pytest.approx(expected, abs=1e-5)
    # the first update copies; later ones weigh the newest iterate by (1 - d) / (1 - d^t)
    fresh = WeightAverage(model, decay=0.9, warmup="debiased")
    assert fresh.current_decay() == 0.0
    assert average.current_decay() == pytest.approx(1 - 0.1 / (1 - 0.9**6))


def test_the_tensorflow_warm_up_makes_any_high_decay_the_same_for_thousands_of_steps() -> None:
    # why ema_decay 0.999 and 0.9995 trained the same beauty model (fm_core.weight_average)
    model = _linear(0.0)
    slow, slower = WeightAverage(model, 0.999), WeightAverage(model, 0.9995)
    for _ in range(8_000):
        assert slow.current_decay() == slower.current_decay() < 0.999
        slow.updates += 1
        slower.updates += 1
    assert WeightAverage(model, 0.999).current_decay() < 0.999
    slow.updates = slower.updates = 8_990
    assert slow.current_decay() == 0.999 and slower.current_decay() > 0.999


@pytest.mark.parametrize("warmup", ["", "TensorFlow", "bias", None])
def test_an_unknown_warm_up_is_refused_naming_the_choices(warmup: object) -> None:
    with pytest.raises(ValueError, match=r"warmup must be one of .*tensorflow.*debiased"):
        WeightAverage(_linear(0.0), 0.9, warmup=warmup)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ema_warmup must be one of"):
        TrainConfig(ema_decay=0.9, ema_warmup=warmup)  # type: ignore[arg-type]


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1, 1.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=rf"decay must be in \(0, 1\); got {decay}"):
        WeightAverage(_linear(0.0), decay)


@pytest.mark.parametrize("decay", [-0.5, 1.0, 2.0])
def test_the_trainer_refuses_an_ema_decay_outside_zero_to_one(decay: float) -> None:
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=decay)


def test_an_average_of_another_shape_is_refused() -> None:
    average = WeightAverage(torch.nn.Linear(2, 1), 0.9)
    with pytest.raises(ValueError, match="model has 1 parameters; the average has 2"):
        average.update(_linear(1.0))


def _train(ema_decay: float, **kwargs: object) -> tuple[object, list[dict[str, torch.Tensor]]]:
    catalog = make_catalog()
    seen: list[dict[str, torch.Tensor]] = []

    def validate(model: FoundationModel) -> float:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return [0.2, 0.9, 0.1][len(seen) - 1]  # the second epoch is best

    result = train_fm(
        [(h, None) for h in cycle_histories(catalog, 8, 12, seed=8)], catalog,
        tiny_config(catalog), TrainConfig(epochs=3, batch_size=4, progress=False, seed=3,
                                          ema_decay=ema_decay, **kwargs),  # type: ignore[arg-type]
        validate=validate,
    )  # fmt: skip
    return result, seen


def test_the_trainer_validates_keeps_and_returns_the_averaged_weights() -> None:
    averaged, seen_averaged = _train(0.9)
    plain, seen_plain = _train(0.0)
    assert averaged.best_epoch == plain.best_epoch == 1  # type: ignore[attr-defined]
    for name, value in averaged.model.state_dict().items():  # type: ignore[attr-defined]
        torch.testing.assert_close(value, seen_averaged[1][name], rtol=0.0, atol=0.0)
    # the same seed trains the same weights; validation saw their average, not them
    moved = [
        name for name, value in seen_plain[1].items()
        if value.is_floating_point() and not torch.equal(value, seen_averaged[1][name])
    ]  # fmt: skip
    assert "items.id_emb.weight" in moved or any("blocks.0" in name for name in moved)
    assert len(moved) > 10

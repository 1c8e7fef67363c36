"""Knowledge distillation of the FM: the loss against worked values, a student that equals its
teacher gets no gradient (so teacher and student score the same candidates, corrected alike),
and the trainer keeps the teachers frozen."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fm_core.model import Distillation, FoundationModel
from fm_core.objectives import distillation_loss, sampled_softmax_loss
from fm_core.tokenize import collate, tokenize_histories
from fm_core.train_fm import TrainConfig, train_fm
from tests.fm_core.test_fm_model import DAY, T0, cycle_histories, make_catalog, tiny_config

INF = float("inf")


def test_distillation_loss_is_the_cross_entropy_against_the_teachers_geometric_mean() -> None:
    student = torch.tensor([[0.5, -1.0, 2.0, -INF], [1.0, 0.0, -0.5, 0.25]], requires_grad=True)
    teachers = torch.tensor([
        [[1.0, 0.0, 0.0, 9.0], [0.0, 2.0, 1.0, 0.0]],
        [[0.0, 1.0, 3.0, -9.0], [1.0, 1.0, -1.0, 2.0]],
    ])  # fmt: skip
    loss = distillation_loss(student, teachers)
    for row in range(2):
        keep = torch.isfinite(student[row])  # the blocked candidate takes no part
        mean = sum(torch.log_softmax(t[row][keep], -1) for t in teachers) / 2
        target = torch.softmax(mean, -1)
        by_hand = -(target * torch.log_softmax(student[row][keep].detach(), -1)).sum()
        assert float(loss[row].detach()) == pytest.approx(float(by_hand), abs=1e-6)
    loss.sum().backward()
    assert student.grad is not None and bool(torch.isfinite(student.grad).all())
    assert float(student.grad[0, 3]) == 0.0


def test_a_student_equal_to_its_teacher_up_to_a_shift_has_no_distillation_gradient() -> None:
    teacher = torch.randn(5, 7)
    for student in (teacher.clone(), teacher + 3.0):
        student.requires_grad_(True)
        distillation_loss(student, teacher[None]).sum().backward()
        assert student.grad is not None
        assert float(student.grad.abs().max()) < 1e-6


def test_the_sampled_loss_mixes_the_targets_and_the_teachers_by_the_weight() -> None:
    torch.manual_seed(0)
    M, N, D, S = 6, 30, 8, 12
    h, table, bias = torch.randn(M, D), torch.randn(N, D), torch.randn(N)
    target, weight = torch.randint(0, N, (M,)), torch.rand(M)
    log_q = torch.log_softmax(torch.randn(N), -1)
    taught = torch.randn(2, M, 1 + S)
    seen: list[torch.Tensor] = []

    def teacher(rows: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        assert torch.equal(rows, target)
        seen.append(negatives)
        return taught

    def loss(**extra: object) -> float:
        torch.manual_seed(1)  # the same negatives for every call
        return float(sampled_softmax_loss(h, table, bias, target, weight, log_q=log_q,
                                          n_sampled=S, **extra))  # type: ignore[arg-type]  # fmt: skip

    hard = loss()
    soft = loss(teacher=teacher, teacher_weight=1.0)
    mixed = loss(teacher=teacher, teacher_weight=0.25)
    assert mixed == pytest.approx(0.75 * hard + 0.25 * soft, rel=1e-5)
    assert soft != pytest.approx(hard)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("n_sampled", [0, 16])
def test_a_student_that_is_its_own_teacher_gets_no_gradient_from_distillation(
    n_sampled: int,
) -> None:
    """Weight 1 leaves only the distillation term, whose gradient is zero where the student's
    candidate scores equal the teacher's: so the teacher scores the student's own negatives
    with the same log-Q correction and freshness bonus, in the same positions."""
    base = make_catalog()
    # items of many ages, so that the freshness bonus differs between candidates
    ages = (1.0 + np.arange(base.n_items) ** 2) * DAY
    catalog = replace(base, release_time=T0 - ages)
    cfg = tiny_config(catalog, n_sampled=n_sampled, genre_weight=0.0, freshness_buckets=8,
                      id_dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    student = FoundationModel.from_catalog(cfg, catalog, age_reference=T0 + 30 * 86400.0)
    with torch.no_grad():
        assert student.freshness is not None
        student.freshness.normal_()  # a bonus that differs by the item's age
        student.item_log_q.copy_(torch.log_softmax(torch.randn(cfg.n_items), -1))
    batch = collate(tokenize_histories(cycle_histories(catalog, 4, 12, seed=3), catalog))
    student.train()

    def gradient(distill: Distillation) -> float:
        student.zero_grad()
        _, loss = student(batch, return_logits=False, distill=distill)
        assert loss is not None
        loss.backward()
        return max(float(p.grad.abs().max()) for p in student.parameters() if p.grad is not None)

    assert gradient(Distillation((copy.deepcopy(student),), weight=1.0)) < 1e-5
    # another teacher, or the targets' share, moves the student
    other = FoundationModel.from_catalog(cfg, catalog, age_reference=T0)
    assert gradient(Distillation((other,), weight=1.0)) > 1e-3
    assert gradient(Distillation((copy.deepcopy(student),), weight=0.5)) > 1e-3


def test_training_with_teachers_keeps_them_frozen_and_refuses_a_mismatched_teacher() -> None:
    catalog = make_catalog()
    cfg = tiny_config(catalog, n_sampled=8, genre_weight=0.0)
    histories = [(h, None) for h in cycle_histories(catalog, 8, 20, seed=7)]
    train = TrainConfig(epochs=1, batch_size=8, progress=False)
    teacher = train_fm(histories, catalog, cfg, train).model
    # a teacher of another width and depth
    narrow = train_fm(histories, catalog, tiny_config(catalog, n_sampled=8, d_model=16,
                                                     n_layers=1), train).model  # fmt: skip
    teacher.zero_grad(set_to_none=True)  # its own training's last gradients
    before = copy.deepcopy(teacher.state_dict())
    distill = Distillation((teacher, narrow), weight=0.5)
    student = train_fm(
        histories,
        catalog,
        cfg,
        TrainConfig(epochs=2, batch_size=8, seed=1, progress=False),
        distill=distill,
    )
    assert all(math.isfinite(m.loss) for m in student.metrics)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training

    bigger = make_catalog(n_items=25)
    stranger = FoundationModel.from_catalog(tiny_config(bigger), bigger, age_reference=T0)
    with pytest.raises(ValueError, match="teacher 0 has 25 items and max_len 16; the student "
                       "needs 20 items"):  # fmt: skip
        train_fm(histories, catalog, cfg, train, distill=Distillation((stranger,)))


@pytest.mark.parametrize(
    ("teachers", "weight", "message"),
    [
        ((), 0.5, "distillation needs at least one teacher"),
        (None, 0.0, r"distillation weight must be in \(0, 1\]; got 0.0"),
        (None, 1.5, r"distillation weight must be in \(0, 1\]; got 1.5"),
        (None, -0.1, r"distillation weight must be in \(0, 1\]; got -0.1"),
    ],
)
def test_bad_distillation_settings_are_refused(
    teachers: tuple[FoundationModel, ...] | None, weight: float, message: str
) -> None:
    catalog = make_catalog()
    model = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0)
    with pytest.raises(ValueError, match=message):
        Distillation((model,) if teachers is None else teachers, weight=weight)

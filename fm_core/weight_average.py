"""An exponential moving average of a model's weights (Polyak averaging), for validation and
serving.

After every optimizer step ``update`` moves each averaged parameter toward the trained one:

    θ̄ ← d·θ̄ + (1 − d)·θ,    d = min(decay, (1 + t) / (10 + t)) at update t = 1, 2, ...

so that the early average is not held near the random initialization (the warm-up of d is
TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``). The warm-up rules for a long
time: (1 + t) / (10 + t) reaches 0.999 only at update 8,991, and until then the average spans
about the last t / 9 updates, a ninth of the run so far. Only after that does decay 0.999 span
about the last thousand. Beauty's preset (318 steps an epoch, stopped within about 12 epochs)
never leaves the warm-up, so any decay of 0.998 or more trains the same average there. The
average is one ``torch._foreach_lerp_`` over all
parameters on their own device, with d computed on the host: no step waits for the device.
Buffers (the catalog's release times, the sampled-softmax proposal) are fixed during training
and stay as they were copied.

torch's ``swa_utils.AveragedModel`` does the same arithmetic, but its update compares a device
counter with 0 on every step, a host synchronization per step on a GPU, which the trainer
avoids (``fm_core.train_fm``).
"""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """The averaged copy of ``model``; ``module`` is it (always in eval mode)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1); got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._averaged = list(self.module.parameters())

    def current_decay(self) -> float:
        """d at the next update."""
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average toward ``model``'s parameters (same architecture)."""
        weight = 1.0 - self.current_decay()
        trained = [p.detach() for p in model.parameters()]
        if len(trained) != len(self._averaged):
            raise ValueError(f"model has {len(trained)} parameters; the average has "
                             f"{len(self._averaged)}")  # fmt: skip
        torch._foreach_lerp_(self._averaged, trained, weight)
        self.updates += 1

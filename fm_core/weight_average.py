"""An exponential moving average of a model's weights (Polyak averaging), for validation and
serving.

After every optimizer step ``update`` moves each averaged parameter toward the trained one,

    θ̄ ← d·θ̄ + (1 − d)·θ    at update t = 1, 2, ...,

with d rising to ``decay`` over the first updates, so that the early average is not held near
the random initialization. Two warm-ups of d:

- ``"tensorflow"`` (the default), as TensorFlow's ``ExponentialMovingAverage`` with
  ``num_updates``: d = min(decay, (1 + t) / (10 + t)). It rules for a long time: it reaches
  0.999 only at update 8,991, and until then the average spans about the last t / 9 updates,
  a ninth of the run so far. Beauty's preset (318 steps an epoch, stopped within about 12
  epochs) never leaves it, so any decay of 0.998 or more trains the same average there.
- ``"debiased"``: d = 1 − (1 − decay) / (1 − decayᵗ), which makes the average exactly the
  bias-corrected one of Adam's moments, Σₛ decayᵗ⁻ˢ·θₛ / Σₛ decayᵗ⁻ˢ over the updates so far:
  from the first update it spans about the last 1 / (1 − decay) steps.

The average is one ``torch._foreach_lerp_`` over all parameters on their own device, with d
computed on the host: no step waits for the device. Buffers (the catalog's release times, the
sampled-softmax proposal) are fixed during training and stay as they were copied.

torch's ``swa_utils.AveragedModel`` does the same arithmetic, but its update compares a device
counter with 0 on every step, a host synchronization per step on a GPU, which the trainer
avoids (``fm_core.train_fm``).
"""

from __future__ import annotations

import copy

import torch

__all__ = ["WARMUPS", "WeightAverage"]

WARMUPS = ("tensorflow", "debiased")
"""How d rises to ``decay`` over the first updates (see the module's docstring)."""


class WeightAverage:
    """The averaged copy of ``model``; ``module`` is it (always in eval mode)."""

    def __init__(self, model: torch.nn.Module, decay: float, *, warmup: str = "tensorflow") -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1); got {decay}")
        if warmup not in WARMUPS:
            raise ValueError(f"warmup must be one of {WARMUPS}; got {warmup!r}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._averaged = list(self.module.parameters())

    def current_decay(self) -> float:
        """d at the next update."""
        t = self.updates + 1
        if self.warmup == "debiased":
            return 1.0 - (1.0 - self.decay) / (1.0 - self.decay**t)
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

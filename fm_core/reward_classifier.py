"""The ranker's network as the reward model of off-policy evaluation (DM and the doubly robust
estimators): a binary classifier with scikit-learn's ``fit(X, y)`` / ``predict_proba(X)``, so
``ope.reward_model.cross_fit`` can cross-fit it like its logistic and gradient-boosting models.

Model: the dense features are standardized with the training rows' mean and deviation, then
feed the ranker's DCN-v2 ``CrossDeepNetwork`` (a cross network of full-rank layers beside a
deep tower, one linear head over both; ``fm_core.ranker``). The cross layers learn the feature
interactions (x_i · x_j, and higher orders with more layers) that a logistic model on the same
features cannot represent.

Fit: a stratified validation split (``valid_share`` of each class, drawn with ``seed``) is held
out; the rest trains with weighted binary cross-entropy, Adam and shuffled minibatches, the head's
bias starting at the logit of the training click rate. After each epoch the validation log loss
is measured; training stops ``patience`` epochs after its best epoch and keeps that epoch's
weights. Temperature calibration (``fm_core.calibration.fit_temperature``, Platt scaling) is
then fitted on the validation rows' logits, when they hold both classes (identity otherwise).

Determinism and devices: one seed fixes the split, the initial weights, the minibatch order and
dropout. Torch's global random state is forked for the fit and restored afterwards
(``torch.random.fork_rng``), so fitting never moves anyone else's random numbers. The device is
chosen by ``fm_core.device.select_device`` (bf16 autocast on CUDA, fp32 on the CPU). The number
of torch threads is never set here.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention

from fm_core.calibration import Calibrator, fit_temperature
from fm_core.device import autocast_context, select_device
from fm_core.ranker import CrossDeepNetwork

logger = logging.getLogger(__name__)

PREDICT_BATCH = 65536


@dataclass(frozen=True)
class RewardEpoch:
    """One training epoch: weighted mean log loss on the training and validation rows."""

    epoch: int
    train_loss: float
    valid_loss: float | None


def _check_features(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (rows, features); got shape {X.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be finite; got {X[row, column]} at row {row}, column {column}"
        )
    return X


def _check_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n,):
        raise ValueError(f"y must have {n} rows like X; got shape {y.shape}")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"y must be binary (0 or 1); got {y[row]} at row {row}")
    if y.min() == y.max():
        raise ValueError(f"y must hold both classes (0 and 1); got only {int(y[0])}")
    return y


def _check_weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have {n} rows like X; got shape {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"sample_weight must be finite and >= 0; got {w[row]} at row {row}")
    if w.sum() <= 0:
        raise ValueError("sample_weight must not all be 0")
    return w


def _stratified_valid(y: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool: ``share`` of each class held out, at least one row of a class that has two."""
    valid = np.zeros(y.size, dtype=bool)
    for label in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(y == label))
        if rows.size >= 2:
            valid[rows[: max(1, round(share * rows.size))]] = True
    return valid


def _weighted_log_loss(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    losses = np.logaddexp(0.0, logits) - y * logits
    return float(np.sum(w * losses) / w.sum())


class RankerRewardModel:
    """P(reward = 1 | features) by the ranker's cross network and deep tower, calibrated.

    Args:
        n_cross: cross layers (0: the deep tower alone).
        hidden: sizes of the deep tower's layers.
        dropout: dropout after each deep layer, while training.
        lr, weight_decay: Adam's step size and L2 penalty.
        batch_size: rows per minibatch.
        max_epochs, patience: at most ``max_epochs`` passes; stop ``patience`` epochs after the
            best validation loss.
        valid_share: share of each class held out for early stopping and calibration.
        seed: fixes the split, initial weights, minibatch order and dropout.
    """

    def __init__(
        self,
        *,
        n_cross: int = 2,
        hidden: tuple[int, ...] = (64, 32),
        dropout: float = 0.1,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 256,
        max_epochs: int = 60,
        patience: int = 5,
        valid_share: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.hidden = tuple(int(h) for h in hidden)
        if n_cross < 0 or not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"n_cross must be >= 0 and hidden a non-empty tuple of sizes >= 1; got "
                f"n_cross {n_cross}, hidden {hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0; got {lr}, {weight_decay}")
        if batch_size < 1 or max_epochs < 1 or patience < 1:
            raise ValueError(
                f"batch_size, max_epochs and patience must be >= 1; got {batch_size}, "
                f"{max_epochs}, {patience}"
            )
        if not 0.0 < valid_share < 0.5:
            raise ValueError(f"valid_share must be in (0, 0.5); got {valid_share}")
        self.n_cross = n_cross
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_share = valid_share
        self.seed = seed
        self.classes_ = np.array([0, 1])
        self.network_: CrossDeepNetwork | None = None
        self.calibrator_ = Calibrator()
        self.epochs_: list[RewardEpoch] = []
        self.best_epoch_ = -1

    # ---- fitting -----------------------------------------------------------------------------

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> RankerRewardModel:
        """Train on rows ``X`` (n, f) with binary labels ``y`` (n,) and optional weights."""
        X = _check_features(X)
        y = _check_labels(y, X.shape[0])
        w = _check_weights(sample_weight, X.shape[0])
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 1e-9, scale, 1.0)
        valid = _stratified_valid(y, self.valid_share, np.random.default_rng(self.seed))
        train = ~valid
        device = select_device()
        self.device_ = device
        # torch.manual_seed also seeds every CUDA device: fork them all on CUDA
        forked = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(self.seed)
            network = self._train(device, X, y, w, train, valid)
        self.network_ = network
        if valid.any() and np.unique(y[valid]).size == 2:
            logits = self._logits(X[valid], network)
            self.calibrator_ = fit_temperature(logits, y[valid], w[valid])
        else:
            self.calibrator_ = Calibrator()
            logger.warning("reward model: no validation rows of both classes; not calibrated")
        logger.info(
            "reward model: %d rows, best epoch %d of %d, calibration scale %.3f bias %.3f",
            X.shape[0], self.best_epoch_, len(self.epochs_), self.calibrator_.scale,
            self.calibrator_.bias,
        )  # fmt: skip
        return self

    def _tensor(self, X: np.ndarray, device: torch.device) -> torch.Tensor:
        standardized = (X - self.mean_) / self.scale_
        return torch.as_tensor(standardized, dtype=torch.float32, device=device)

    def _train(
        self,
        device: torch.device,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        train: np.ndarray,
        valid: np.ndarray,
    ) -> CrossDeepNetwork:
        network = CrossDeepNetwork(
            X.shape[1], n_cross=self.n_cross, hidden=self.hidden, dropout=self.dropout
        ).to(device)
        rate = float(np.clip(np.sum(w[train] * y[train]) / np.sum(w[train]), 1e-4, 1 - 1e-4))
        with torch.no_grad():
            network.head.bias.fill_(float(np.log(rate / (1.0 - rate))))
        optimizer = torch.optim.Adam(
            network.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        features = self._tensor(X[train], device)
        labels = torch.as_tensor(y[train], dtype=torch.float32, device=device)
        weights = torch.as_tensor(w[train] / w[train].mean(), dtype=torch.float32, device=device)
        n = int(train.sum())
        generator = torch.Generator().manual_seed(self.seed)
        self.epochs_ = []
        self.best_epoch_ = -1
        best_loss, best_state = float("inf"), None
        for epoch in range(self.max_epochs):
            network.train()
            order = torch.randperm(n, generator=generator).to(device)
            total = 0.0
            for first in range(0, n, self.batch_size):
                rows = order[first : first + self.batch_size]
                with autocast_context(device):
                    logits = network(features[rows])
                losses = F.binary_cross_entropy_with_logits(
                    logits.float(), labels[rows], reduction="none"
                )
                loss = (losses * weights[rows]).sum() / weights[rows].sum().clamp(min=1e-12)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * rows.numel()
            valid_loss = None
            if valid.any():
                logits = self._logits(X[valid], network)
                valid_loss = _weighted_log_loss(logits, y[valid], w[valid])
                if valid_loss < best_loss:
                    best_loss, best_state = valid_loss, copy.deepcopy(network.state_dict())
                    self.best_epoch_ = epoch
            self.epochs_.append(RewardEpoch(epoch, total / n, valid_loss))
            if valid_loss is not None and epoch - self.best_epoch_ >= self.patience:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.epochs_) - 1
        network.eval()
        return network

    # ---- prediction --------------------------------------------------------------------------

    @torch.no_grad()
    def _logits(self, X: np.ndarray, network: CrossDeepNetwork) -> np.ndarray:
        """(m,) uncalibrated logits of ``network``, in eval mode, in batches on its device."""
        network.eval()
        out = []
        for first in range(0, X.shape[0], PREDICT_BATCH):
            batch = self._tensor(X[first : first + PREDICT_BATCH], self.device_)
            with autocast_context(self.device_):
                out.append(network(batch).float().cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(m, 2) calibrated probabilities of reward 0 and 1 for rows ``X`` (m, f)."""
        network = self.network_
        if network is None:
            raise RuntimeError("RankerRewardModel is not fitted; call fit(X, y) first")
        X = _check_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have the {self.n_features_in_} features the model was fitted on; got "
                f"{X.shape[1]}"
            )
        p = self.calibrator_.predict(self._logits(X, network))
        return np.column_stack([1.0 - p, p])

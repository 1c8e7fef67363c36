"""Foundation-model checkpoints: the config travels with the weights, so a checkpoint alone
rebuilds the model (the catalog's metadata is in the state's buffers).

Format: ``torch.save({"config": asdict(cfg), "state": state_dict, "catalog_size": n_items,
"meta": {...}})``, written to a temporary file and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fm_core.model import FMConfig, FoundationModel


def unwrap(model: nn.Module) -> FoundationModel:
    """The FoundationModel inside a DistributedDataParallel (or the model itself)."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, FoundationModel):
        raise TypeError(f"expected a FoundationModel; got {type(inner).__name__}")
    return inner


def save_checkpoint(
    path: str | Path, model: nn.Module, *, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (or the model in a DDP wrapper) with its config; returns the path."""
    fm = unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in fm.state_dict().items()}
    payload = {
        "config": asdict(fm.cfg),
        "state": state,
        "catalog_size": fm.cfg.n_items,
        "meta": meta or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[FoundationModel, dict[str, Any]]:
    """The model (in eval mode) and the meta dict of a checkpoint, from the file alone."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    cfg = FMConfig(**payload["config"])
    if payload["catalog_size"] != cfg.n_items:
        raise ValueError(
            f"checkpoint catalog_size {payload['catalog_size']} != config n_items {cfg.n_items}"
        )
    model = FoundationModel(cfg)
    model.load_state_dict(payload["state"])
    model.to(map_location)
    model.eval()
    return model, payload.get("meta", {})

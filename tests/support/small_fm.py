"""One small FM + ranker model file per test process, made by ``loop.small_model.small_fm_model``
(a few seconds), shared by the tests of the FM serving path."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from loop.small_model import small_fm_model

_MADE: dict[str, Path] = {}


def small_fm_path() -> Path:
    """The path of this process's small FM model file (300 titles, 100 members)."""
    if "path" not in _MADE:
        folder = Path(tempfile.mkdtemp(prefix="loopbreak-small-fm-"))
        atexit.register(shutil.rmtree, folder, True)
        _MADE["path"] = small_fm_model(
            folder / "fm.npz", n_items=300, n_users=100, decisions=200, seed=5
        )
    return _MADE["path"]

"""The model file's format, which every scorer's ``save`` and ``load`` share.

A model file is one ``.npz`` archive: a JSON ``meta`` entry naming its ``kind``, then the item
catalog (its arrays as entries, its genre names and tokens at the end of ``meta``), then the
scorer's own arrays. It is written to a temporary file and renamed, so a crash never leaves half
a model. This module reads and writes that frame and the catalog in it; what else a kind stores
belongs to its scorer. It imports numpy only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fm_core.types import ItemCatalog

FM_RANKER_KIND = "fm_ranker"
BASELINE_KIND = "popularity_affinity"
_NAMED = {FM_RANKER_KIND: "an fm_ranker model", BASELINE_KIND: "a popularity_affinity model"}


class ModelArchive:
    """An opened model file: ``data`` (its arrays), ``meta`` (its JSON entry) and ``catalog()``.

    Anything that is not a model file, or (when ``kind`` is given) not one of that kind, raises
    ValueError naming the path. A missing file raises ValueError too when no kind is asked for
    (the probe of which kind a file holds), and FileNotFoundError when one is.
    """

    def __init__(self, path: str | Path, kind: str | None = None) -> None:
        what = "a loopbreak model file" if kind is None else _NAMED[kind]
        try:
            archive = np.load(Path(path), allow_pickle=False)
        except (ValueError, OSError) as error:
            if kind is not None and isinstance(error, FileNotFoundError):
                raise
            raise ValueError(f"{path} is not {what}: {error}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not {what}: not an .npz archive")
        if "meta" not in archive.files:
            archive.close()
            raise ValueError(f"{path} is not {what}: no meta entry")
        self.data = archive
        try:
            self.meta: dict[str, Any] = json.loads(str(archive["meta"]))
        except ValueError as error:
            archive.close()
            raise ValueError(f"{path} is not {what}: its meta entry is not JSON") from error
        if kind is not None and self.meta.get("kind") != kind:
            archive.close()
            raise ValueError(f"{path} is not {what}: its kind is {self.meta.get('kind')!r}")

    def catalog(self) -> ItemCatalog:
        """The item catalog stored with the model."""
        return ItemCatalog(
            item_ids=self.data["item_ids"],
            genres=self.data["genres"],
            release_time=self.data["release_time"],
            tokens=tuple(tuple(t) for t in self.meta["tokens"]),
            genre_names=tuple(self.meta["genre_names"]),
        )

    def __enter__(self) -> ModelArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.data.close()


def open_model_file(path: str | Path, kind: str | None = None) -> ModelArchive:
    """The model file at ``path`` as a context manager (see ``ModelArchive``)."""
    return ModelArchive(path, kind)


def write_model_file(
    path: str | Path,
    kind: str,
    meta: dict[str, Any],
    catalog: ItemCatalog,
    arrays: dict[str, np.ndarray],
) -> Path:
    """Write a model of ``kind`` to ``path`` atomically: ``meta`` (after the kind, before the
    catalog's genre names and tokens), the catalog's arrays, then ``arrays``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": kind,
        **meta,
        "genre_names": list(catalog.genre_names),
        "tokens": [list(t) for t in catalog.tokens],
    }
    entries = {
        "item_ids": catalog.item_ids,
        "genres": catalog.genres,
        "release_time": catalog.release_time,
        **arrays,
    }
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:  # a handle, so numpy does not append ".npz" to the name
        np.savez(handle, meta=np.array(json.dumps(meta)), **entries)
    os.replace(tmp, path)
    return path

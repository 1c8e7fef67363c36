"""Policy replay on Spark: a target policy's exact probabilities of each logged slate
(``ope.replay.replay_slate``), computed by a pandas UDF (``mapInPandas``) over the partitions
of a table with one row per logged decision.

Input columns: ``decision_id``, ``scores`` (the target model's scores on the decision's logged
candidates, an array of doubles) and ``slate`` (each position's index into those candidates, an
array of longs). Output, per decision: ``marginal`` and ``item`` (arrays, one entry a position),
``prefix`` (an array, or null where the policy's prefix probabilities are not known), and
``slate_probability``: the same numbers as ``replay_slate`` in this process. The policy is
shipped to the executors by pickling; anything with the ``ReplayPolicy`` methods will do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ope.replay import ReplayPolicy, replay_slate
from ope.spark_session import quiet_pandas_warning

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

REPLAY_INPUT = ("decision_id", "scores", "slate")
REPLAY_SCHEMA = (
    "decision_id string, marginal array<double>, item array<double>, prefix array<double>, "
    "slate_probability double, error string"
)


def replay_frame(frame: pd.DataFrame, policy: ReplayPolicy) -> pd.DataFrame:
    """Replay every decision of ``frame`` (the input columns); a decision the replay refuses
    gets its reason in ``error`` instead of numbers."""
    out: dict[str, list[object]] = {name: [] for name in
                                    ("decision_id", "marginal", "item", "prefix",
                                     "slate_probability", "error")}  # fmt: skip
    for decision_id, scores, slate in zip(
        frame["decision_id"], frame["scores"], frame["slate"], strict=True
    ):
        out["decision_id"].append(str(decision_id))
        try:
            replayed = replay_slate(
                policy, np.asarray(scores, dtype=np.float64), np.asarray(slate, dtype=np.int64),
                require_prefix=False,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            for name in ("marginal", "item", "prefix", "slate_probability"):
                out[name].append(None)
            out["error"].append(str(exc))
            continue
        out["marginal"].append(replayed.marginal)
        out["item"].append(replayed.item)
        out["prefix"].append(replayed.prefix)
        out["slate_probability"].append(replayed.slate)
        out["error"].append(None)
    return pd.DataFrame(out)


def spark_replay(decisions: DataFrame, policy: ReplayPolicy) -> DataFrame:
    """The target's probabilities of each logged slate, one row a decision (see the module
    docstring); raises ValueError naming a missing input column."""
    missing = [c for c in REPLAY_INPUT if c not in decisions.columns]
    if missing:
        raise ValueError(
            f"the replay input lacks the column(s) {', '.join(missing)}; it needs decision_id, "
            "scores (the target's scores on the logged candidates) and slate (the logged "
            "positions' candidate indexes)"
        )

    def replay(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield replay_frame(frame, policy)

    with quiet_pandas_warning():
        return decisions.select(*REPLAY_INPUT).mapInPandas(replay, REPLAY_SCHEMA)


def first_error(replayed: DataFrame) -> str | None:
    """The first refused decision's reason, or None when every decision replayed."""
    row = replayed.where("error is not null").select("decision_id", "error").first()
    return None if row is None else f"decision {row['decision_id']}: {row['error']}"

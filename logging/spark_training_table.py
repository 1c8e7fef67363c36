"""The training table on Spark: the rows, weights and report of
:func:`proplog.training_table.build_training_table`, row for row, from Spark DataFrames of the
log (the ``decision_frame``, ``slate_frame`` and ``event_frame`` columns, e.g. read from Parquet
in a data lake), and the decisions' point-in-time histories of :class:`loop.context.HistoryIndex`.

- **Slate rows**: 1 / propensity clipped at ``clip_max`` (1 where the marginal is not exact), then
  with ``self_normalize`` one constant n / Σw for all of them: a first aggregate gives the
  constant, a second the report.
- **Search and direct plays**: attached to the user's latest decision at or before the play and
  at most ``context_window_s`` earlier (pandas' ``merge_asof``; among decisions at the same time,
  the later in decision order), weight α (``search_weight``) or ``direct_weight``.
- **request_row**: the decision's row in ``(created_at, decision_id)`` order, the order of
  ``proplog.frames.decision_frame``.
- **Histories**: each decision's user's events strictly before it, oldest first, the last
  ``max_events``.

Rows come back in the pandas builder's order: slate rows by decision and position, then plays by
time. pyspark is imported inside functions only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from proplog.training_table import ROW_COLUMNS, TrainingTableConfig, WeightReport
from proplog.validation import check_aware_utc

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("item_ids", "times", "kinds", "values", "sources")
"""The history arrays of :func:`spark_histories`, as ``fm_core.History`` names them."""


@dataclass(frozen=True)
class SparkTrainingTable:
    """``rows`` (a Spark DataFrame in :data:`ROW_COLUMNS`, ordered as the pandas builder's), and
    the same :class:`WeightReport`."""

    rows: DataFrame
    report: WeightReport
    config: TrainingTableConfig


def _require(frame: DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} must have the columns {', '.join(columns)}; missing {missing}")


def request_rows(decisions: DataFrame) -> DataFrame:
    """decision_id, created_at, user_id and request_row (the rank in (created_at, decision_id)
    order, numbered by ``zipWithIndex`` over the sorted decisions, without a one-partition
    window)."""
    from pyspark.sql.types import LongType, StructField, StructType

    ordered = decisions.select("decision_id", "created_at", "user_id").orderBy(
        "created_at", "decision_id"
    )
    schema = StructType([*ordered.schema.fields, StructField("request_row", LongType(), False)])
    numbered = ordered.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
    return ordered.sparkSession.createDataFrame(numbered, schema)


def _slate_rows(slates: DataFrame, requests: DataFrame, config: TrainingTableConfig) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    played = sf.col("played").cast("long") > 0
    chosen = slates.withColumn("label", played.cast("double"))
    if config.negatives == "none":
        chosen = chosen.where(played)
    elif config.negatives == "examined":
        last = sf.max(sf.when(played, sf.col("position")).otherwise(-1)).over(
            Window.partitionBy("decision_id")
        )
        chosen = chosen.withColumn("_last", last).where(sf.col("position") <= sf.col("_last"))
    return chosen.join(requests.select("decision_id", "request_row"), "decision_id").select(
        "decision_id",
        "request_row",
        sf.col("item_id").cast("long").alias("item_id"),
        sf.col("position").cast("long").alias("position"),
        "label",
        sf.col("propensity").cast("double").alias("propensity"),
        sf.lit("slate").alias("origin"),
        sf.lit(None).cast("timestamp").alias("event_time"),
    )


def _weigh(rows: DataFrame, config: TrainingTableConfig) -> tuple[DataFrame, dict[str, Any]]:
    """The slate rows with ``weight``, and the report's weight fields (two aggregates)."""
    from pyspark.sql import functions as sf

    raw = sf.when(sf.col("propensity").isNull(), 1.0).otherwise(1.0 / sf.col("propensity"))
    clipped = sf.least(raw, sf.lit(float(config.clip_max)))
    first = rows.agg(
        sf.count(sf.lit(1)).alias("n"),
        sf.sum(clipped).alias("total"),
        sf.sum((raw > float(config.clip_max)).cast("long")).alias("clipped"),
        sf.sum(sf.col("propensity").isNull().cast("long")).alias("inexact"),
    ).first()
    n = int(first["n"])
    normalizer = 1.0
    if config.self_normalize and n:
        normalizer = n / float(first["total"])
    weighted = rows.withColumn("weight", clipped * sf.lit(normalizer))
    second = weighted.agg(
        sf.sum("weight").alias("sum"),
        sf.sum(sf.col("weight") * sf.col("weight")).alias("sum_sq"),
        sf.max("weight").alias("max"),
        sf.min("weight").alias("min"),
    ).first()
    total, sum_sq = float(second["sum"] or 0.0), float(second["sum_sq"] or 0.0)
    ess = total**2 / sum_sq if n else 0.0
    return weighted, {
        "weight_max": float(second["max"]) if n else 0.0,
        "weight_mean": total / n if n else 0.0,
        "weight_min": float(second["min"]) if n else 0.0,
        "ess": ess,
        "ess_share": ess / n if n else 0.0,
        "clipped": int(first["clipped"] or 0),
        "without_exact_marginal": int(first["inexact"] or 0),
        "normalizer": normalizer,
    }


def _play_rows(
    events: DataFrame, requests: DataFrame, config: TrainingTableConfig, until: datetime | None
) -> tuple[DataFrame, int]:
    """Search and direct plays attached to the user's latest decision within the window."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    plays = events.where(
        (sf.col("kind") == "play") & sf.col("source").isin("search", "direct")
    ).select(
        sf.col("event_id"),
        sf.col("created_at").alias("when"),
        sf.col("user_id").cast("string").alias("user_id"),
        sf.col("item_id").cast("long").alias("item_id"),
        sf.col("source"),
    )
    if until is not None:
        plays = plays.where(sf.col("when") < sf.lit(until))
    window_s = float(config.context_window_s)
    d = requests.select(
        sf.col("user_id").cast("string").alias("d_user"),
        sf.col("created_at").alias("d_when"),
        "decision_id",
        "request_row",
    )
    lag = sf.col("when").cast("double") - sf.col("d_when").cast("double")
    candidates = plays.join(
        d, (sf.col("user_id") == sf.col("d_user")) & (sf.col("d_when") <= sf.col("when"))
    ).where(lag <= window_s)
    latest = Window.partitionBy("event_id").orderBy(sf.desc("d_when"), sf.desc("request_row"))
    attached = (
        candidates.withColumn("_rank", sf.row_number().over(latest)).where("_rank = 1").cache()
    )
    found = attached.count()
    total = plays.count()
    weight = sf.when(sf.col("source") == "search", float(config.search_weight)).otherwise(
        float(config.direct_weight)
    )
    rows = attached.select(
        "decision_id",
        "request_row",
        "item_id",
        sf.lit(0).cast("long").alias("position"),
        sf.lit(1.0).alias("label"),
        weight.alias("weight"),
        sf.col("source").alias("origin"),
        sf.lit(None).cast("double").alias("propensity"),
        sf.col("when").alias("event_time"),
        sf.col("event_id").alias("_event_id"),
    )
    return rows, total - found


def _order(slate_rows: DataFrame, play_rows: DataFrame) -> DataFrame:
    from pyspark.sql import functions as sf

    slates = slate_rows.select(
        *ROW_COLUMNS,
        sf.lit(0).alias("_part"),
        sf.col("request_row").alias("_a"),
        sf.col("position").cast("double").alias("_b"),
        sf.lit("").alias("_c"),
    )
    plays = play_rows.select(
        *ROW_COLUMNS,
        sf.lit(1).alias("_part"),
        sf.col("event_time").cast("double").alias("_b"),
        sf.lit(0).cast("long").alias("_a"),
        sf.col("_event_id").alias("_c"),
    ).select(*slates.columns)
    return slates.unionByName(plays).orderBy("_part", "_a", "_b", "_c").select(*ROW_COLUMNS)


def spark_training_table(
    *,
    decisions: DataFrame,
    slates: DataFrame,
    events: DataFrame,
    config: TrainingTableConfig | None = None,
    until: datetime | None = None,
) -> SparkTrainingTable:
    """The weighted training rows of the logged ``decisions`` on Spark (the module docstring);
    ``build_training_table``'s arguments as Spark DataFrames, and its checks."""
    config = config or TrainingTableConfig()
    _require(decisions, "decisions", ("decision_id", "created_at", "user_id"))
    _require(slates, "slates", ("decision_id", "position", "item_id", "propensity"))
    _require(events, "events", ("created_at", "user_id", "item_id", "kind", "source"))
    if "played" not in slates.columns:
        raise ValueError("slates must have the column played (use proplog.frames.slate_frame)")
    if "event_id" not in events.columns:
        raise ValueError("events must have the column event_id (use proplog.frames.event_frame)")
    if until is not None:
        until = check_aware_utc(until, "until")
    requests = request_rows(decisions).cache()
    unknown = slates.join(requests, "decision_id", "left_anti").select("decision_id").first()
    if unknown is not None:
        raise ValueError(f"slates name decision {unknown[0]!r}, which is not in decisions")
    slate_rows = _slate_rows(slates, requests, config)
    weighted, weights = _weigh(slate_rows, config)
    play_rows, missing = _play_rows(events, requests, config, until)
    counts = {
        row["origin"]: (int(row["rows"]), int(row["positives"]))
        for row in weighted.unionByName(play_rows.drop("_event_id"))
        .groupBy("origin")
        .agg({"label": "sum", "*": "count"})
        .withColumnsRenamed({"sum(label)": "positives", "count(1)": "rows"})
        .collect()
    }
    report = WeightReport(
        slate_rows=counts.get("slate", (0, 0))[0],
        slate_positives=counts.get("slate", (0, 0))[1],
        search_rows=counts.get("search", (0, 0))[0],
        direct_rows=counts.get("direct", (0, 0))[0],
        plays_without_context=missing,
        **weights,
    )
    logger.info("training table on Spark: %s", report)
    return SparkTrainingTable(rows=_order(weighted, play_rows), report=report, config=config)


def spark_histories(
    decisions: DataFrame, events: DataFrame, *, max_events: int | None = 200
) -> DataFrame:
    """Per decision (``decision_id``, ``request_row``): its user's events strictly before it,
    oldest first (ties by ``event_id``), the last ``max_events``, as arrays named
    :data:`HISTORY_COLUMNS`; empty arrays for a user without earlier events."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    if max_events is not None and (isinstance(max_events, bool) or max_events < 0):
        raise ValueError(f"max_events must be a non-negative int or None; got {max_events!r}")
    _require(events, "events", ("event_id", "created_at", "user_id", "item_id", "kind", "value"))
    requests = request_rows(decisions)
    e = events.select(
        sf.col("user_id").cast("string").alias("e_user"),
        sf.col("created_at").alias("e_when"),
        "event_id",
        sf.col("item_id").cast("long").alias("item_id"),
        "kind",
        sf.col("value").cast("double").alias("value"),
        "source",
    )
    earlier = requests.join(
        e,
        (sf.col("user_id").cast("string") == sf.col("e_user"))
        & (sf.col("e_when") < sf.col("created_at")),
    )
    if max_events is not None:
        latest = Window.partitionBy("decision_id").orderBy(sf.desc("e_when"), sf.desc("event_id"))
        earlier = earlier.withColumn("_rank", sf.row_number().over(latest)).where(
            sf.col("_rank") <= max_events
        )
    event = sf.struct(
        sf.col("e_when").cast("double").alias("t"),
        sf.col("event_id").alias("id"),
        "item_id",
        "kind",
        "value",
        "source",
    )
    grouped = earlier.groupBy("decision_id").agg(sf.array_sort(sf.collect_list(event)).alias("h"))
    fields: dict[str, Column] = {
        "item_ids": sf.col("h.item_id"),
        "times": sf.col("h.t"),
        "kinds": sf.col("h.kind"),
        "values": sf.col("h.value"),
        "sources": sf.col("h.source"),
    }
    joined = requests.join(grouped, "decision_id", "left")
    empty = {
        "item_ids": "array<bigint>",
        "times": "array<double>",
        "kinds": "array<string>",
        "values": "array<double>",
        "sources": "array<string>",
    }
    return joined.select(
        "decision_id",
        "request_row",
        *[
            sf.coalesce(column, sf.array().cast(empty[name])).alias(name)
            for name, column in fields.items()
        ],
    ).orderBy("request_row")


__all__ = ["HISTORY_COLUMNS", "SparkTrainingTable", "spark_histories", "spark_training_table"]

"""One analysis of an A/B experiment on the log, as ``loopbreak ab analyze`` runs it daily and
the simulated experiments run it: the experiment's decisions up to ``until``, each treatment's
difference from the control (fixed-horizon interval clustered by user, ``ope.ab``), the
sample-ratio check against the planned shares (``ope.ab_srm``), CUPED with each member's
pre-period plays and decisions (``ope.ab_cuped``), the always-valid interval intersected with
the earlier stored looks (``ope.ab_sequential``), and the gate's earlier prediction; each
treatment's analysis is stored in ``ab_analysis`` (and, as before, an ``ope_report`` row with
decision "ab").

The configured shares and the mixture variance τ² come from the experiment's plan stored by
``loopbreak ab plan`` (``proplog.ab_records``) unless the caller gives them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session

from loop.ab_log import experiment_rows, pre_period_covariates, prior_prediction
from ope.ab import AbResult, Difference, agreement, analyze
from ope.ab_cuped import CupedResult, cuped
from ope.ab_sequential import SequentialInterval, confidence_sequence
from ope.ab_srm import DEFAULT_SRM_ALPHA, SrmCheck, srm_check
from ope.report import finite_or_none
from proplog.ab_records import ab_analyses, latest_ab_plan, record_ab_analysis
from proplog.registry import record_ope_report
from proplog.schema import AbAnalysis

logger = logging.getLogger(__name__)

COVARIATES = ("pre_plays", "pre_decisions")


@dataclass(frozen=True)
class AnalysisSettings:
    """What one analysis needs besides the log; None takes the stored plan's value."""

    experiment: str
    control: str = "control"
    reward: str = "plays"
    alpha: float = 0.05
    until: datetime | None = None
    shares: dict[str, float] | None = None
    tau2: float | None = None
    srm_alpha: float | None = None
    use_cuped: bool = True
    store: bool = True


@dataclass(frozen=True)
class ArmAnalysis:
    """One treatment arm against the control."""

    arm: str
    candidate: str
    baseline: str
    fixed: Difference
    welch: Difference
    sequential: SequentialInterval
    cuped: Difference | None
    prediction: dict[str, Any] | None
    agreement: dict[str, Any]
    analysis_id: int | None = None
    report_id: int | None = None


@dataclass(frozen=True)
class ExperimentAnalysis:
    """The whole analysis: every arm's summary, the SRM check, CUPED, each treatment."""

    settings: AnalysisSettings
    result: AbResult
    srm: SrmCheck
    cuped: CupedResult | None
    arms: dict[str, ArmAnalysis]
    versions: dict[str, str]
    plan_id: int | None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The JSON document (finite numbers only)."""
        doc: dict[str, Any] = {
            "experiment": self.settings.experiment,
            "reward": self.settings.reward,
            "until": self.settings.until.isoformat() if self.settings.until else None,
            "plan_id": self.plan_id,
            "srm": self.srm.as_dict(),
            "cuped": self.cuped.as_dict() if self.cuped else None,
            "notes": self.notes,
        } | self.result.as_dict()
        doc["treatments"] = {
            name: {
                "candidate": a.candidate,
                "baseline": a.baseline,
                "fixed": a.fixed.as_dict(),
                "sequential": a.sequential.as_dict(),
                "cuped": a.cuped.as_dict() if a.cuped else None,
                "prediction": a.prediction,
                "agreement": a.agreement,
                "analysis_id": a.analysis_id,
                "report_id": a.report_id,
            }
            for name, a in self.arms.items()
        }
        return finite_or_none(doc)


def _planned(engine: Engine, settings: AnalysisSettings) -> tuple[dict, float, float, int | None]:
    """The shares, τ² and SRM level: the caller's, else the stored plan's."""
    plan = latest_ab_plan(engine, settings.experiment)
    shares = settings.shares or (plan["shares"] if plan else None)
    tau2 = settings.tau2 or (plan["tau2"] if plan else None)
    if shares is None or tau2 is None:
        raise ValueError(
            f"experiment {settings.experiment!r} has no stored plan: run `loopbreak ab plan "
            f"--experiment {settings.experiment} --shares ...` first (it stores the configured "
            "shares the SRM check needs and the confidence sequence's tau2)"
        )
    srm_alpha = settings.srm_alpha or (plan["srm_alpha"] if plan else DEFAULT_SRM_ALPHA)
    return dict(shares), float(tau2), float(srm_alpha), (plan["id"] if plan else None)


def _earlier_looks(engine: Engine, settings: AnalysisSettings, arm: str, tau2: float) -> list:
    """The (lo, hi) of the earlier stored looks at ``arm`` made with the same τ², α, reward."""
    stored = ab_analyses(engine, experiment=settings.experiment)
    if stored.empty:
        return []
    same = stored[(stored["arm"] == arm) & (stored["reward"] == settings.reward)]
    looks = []
    with Session(engine) as session:
        for analysis_id in same["id"]:
            row = session.get(AbAnalysis, int(analysis_id))
            if row is None:
                continue
            seq = row.payload.get("sequential", {})
            if seq.get("tau2") == tau2 and seq.get("alpha") == settings.alpha:
                looks.append((float(seq["lo"]), float(seq["hi"])))
    return looks


def _cuped(
    engine: Engine, rows: pd.DataFrame, settings: AnalysisSettings, notes: list[str]
) -> CupedResult | None:
    if not settings.use_cuped:
        return None
    start = pd.Timestamp(rows["created_at"].min()).to_pydatetime()
    covariates = pre_period_covariates(engine, before=start)
    seen = covariates[covariates["user_id"].isin(rows["user_id"])]
    if seen.empty or float(seen[list(COVARIATES)].to_numpy().std()) == 0.0:
        notes.append("CUPED skipped: no member of the experiment has pre-period activity")
        return None
    return cuped(rows, covariates, control=settings.control, alpha=settings.alpha,
                 names=list(COVARIATES))  # fmt: skip


def run_analysis(engine: Engine, settings: AnalysisSettings) -> ExperimentAnalysis:
    """Analyse the experiment on the log and (with ``settings.store``) store each treatment's
    analysis. Raises ValueError naming what is missing or wrong."""
    rows = experiment_rows(engine, settings.experiment, settings.reward, until=settings.until)
    shares, tau2, srm_alpha, plan_id = _planned(engine, settings)
    result = analyze(rows, control=settings.control, alpha=settings.alpha)
    srm = srm_check(
        {arm: summary.users for arm, summary in result.arms.items()}, shares, alpha=srm_alpha
    )
    notes: list[str] = []
    if srm.flagged:
        notes.append(srm.sentence() + ": do not trust this experiment's differences")
        logger.warning("experiment %s: %s", settings.experiment, srm.sentence())
    adjusted = _cuped(engine, rows, settings, notes)
    started = pd.Timestamp(rows["created_at"].min()).to_pydatetime()
    versions = {
        str(arm): str(v.value_counts().index[0]) for arm, v in rows.groupby("arm")["model_version"]
    }
    arms: dict[str, ArmAnalysis] = {}
    for arm, by_kind in result.differences.items():
        fixed = by_kind["clustered"]
        earlier = _earlier_looks(engine, settings, arm, tau2) if settings.store else []
        sequential = confidence_sequence(
            fixed.value, fixed.se**2, tau2=tau2, alpha=settings.alpha, earlier=earlier
        )
        prediction = prior_prediction(
            engine, candidate=versions[arm], baseline=versions[settings.control], before=started
        )
        arms[arm] = ArmAnalysis(
            arm=arm, candidate=versions[arm], baseline=versions[settings.control], fixed=fixed,
            welch=by_kind["welch"], sequential=sequential,
            cuped=adjusted.differences.get(arm) if adjusted else None, prediction=prediction,
            agreement=agreement(fixed, prediction["lift"]) if prediction else {},
        )  # fmt: skip
    analysis = ExperimentAnalysis(
        settings=settings, result=result, srm=srm, cuped=adjusted, arms=arms, versions=versions,
        plan_id=plan_id, notes=notes,
    )  # fmt: skip
    if not settings.store:
        return analysis
    stored = {name: _store(engine, analysis, one) for name, one in arms.items()}
    return ExperimentAnalysis(
        settings=settings, result=result, srm=srm, cuped=adjusted, arms=stored,
        versions=versions, plan_id=plan_id, notes=notes,
    )  # fmt: skip


def _store(engine: Engine, analysis: ExperimentAnalysis, one: ArmAnalysis) -> ArmAnalysis:
    """The ope_report row (decision "ab") and the ab_analysis row of one treatment."""
    import dataclasses

    settings = analysis.settings
    level = round(100 * (1 - settings.alpha))
    fixed, lift = one.fixed, (one.prediction or {}).get("lift", {})
    payload = {
        "kind": "ab", "experiment": settings.experiment, "arm": one.arm,
        "control": settings.control, "reward": settings.reward,
        "result": analysis.result.as_dict(), "prediction": one.prediction,
        "agreement": one.agreement, "srm": analysis.srm.as_dict(),
        "sequential": one.sequential.as_dict(),
        "cuped": one.cuped.as_dict() if one.cuped else None,
    }  # fmt: skip
    reasons = [
        f"online {one.arm} - {settings.control} {fixed.value:.4g} in [{fixed.lo:.4g}, "
        f"{fixed.hi:.4g}] ({fixed.interval}, {level}%)",
        analysis.srm.sentence(),
    ]
    with Session(engine) as session:
        report_id = record_ope_report(
            session=session, candidate=one.candidate, baseline=one.baseline,
            payload=finite_or_none(payload), decision="ab", reasons=reasons,
        )  # fmt: skip
        analysis_id = record_ab_analysis(
            session=session,
            analysis={
                "experiment": settings.experiment, "arm": one.arm, "control": settings.control,
                "candidate": one.candidate, "baseline": one.baseline, "reward": settings.reward,
                "until": settings.until, "decisions": analysis.result.arms[one.arm].decisions,
                "users": analysis.result.arms[one.arm].users, "observed": fixed.value,
                "observed_lo": fixed.lo, "observed_hi": fixed.hi,
                "sequential_lo": one.sequential.running_lo,
                "sequential_hi": one.sequential.running_hi,
                "cuped": one.cuped.value if one.cuped else None,
                "cuped_lo": one.cuped.lo if one.cuped else None,
                "cuped_hi": one.cuped.hi if one.cuped else None,
                "predicted": lift.get("value"), "predicted_lo": lift.get("lo"),
                "predicted_hi": lift.get("hi"),
                "prediction_report_id": (one.prediction or {}).get("report_id"),
                "srm_pvalue": analysis.srm.pvalue, "srm_flagged": analysis.srm.flagged,
                "payload": finite_or_none(payload | {"ope_report_id": report_id}),
            },
        )  # fmt: skip
    return dataclasses.replace(one, analysis_id=analysis_id, report_id=report_id)

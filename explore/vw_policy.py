"""The Vowpal Wabbit policy: slates from ``cb_explore_adf`` with exact sequential propensities.

A slate of K positions is K single-slot choices. At position k the policy asks VW for its PMF
over the candidates not yet shown (one ``cb_adf`` example, :mod:`explore.vw_format`), normalizes
it in float64, and samples one candidate with the decision's own ``rng`` (VW's sampler is never
used, so a decision replays bit for bit from its id). Hence, exactly,

    cond_propensity[k]   = PMF_k(a_k),  PMF_k = VW's PMF over C \\ {a_1..a_{k-1}}
    prefix_propensity[k] = Π_{j<=k} cond_propensity[j]

The marginal P(candidate i at position k) has no closed form for k > 0, so a slate with K > 1
has ``marginals_exact=False`` and ``propensity`` NaN after position 0, and :meth:`marginals`
works for K = 1 only. ``explored[k]`` is True where the sampled candidate is not the PMF's mode.

Features (DESIGN §5): VW needs more than scores. :meth:`VowpalWabbitSlate.decide_with` takes a
:class:`~explore.vw_format.RequestContext` (surface, device, daypart, country, query tokens, the
user embedding) and :class:`~explore.vw_format.ActionFeatures` (scores, item ids, item
embeddings). :meth:`decide` (the ``Policy`` interface) uses the scores alone, with an empty
context. Replay (:meth:`slate_probability_with`) must be given the same features and the model
in the same state (``params()["updates"]`` since ``params()["model"]``).

Exploration (a constructor option): ``squarecb`` (``--squarecb --gamma_scale G``), ``epsilon``
(``--epsilon E``), ``bag`` (``--bag N --epsilon E``) or ``cover`` (``--cover N --epsilon E``).

One workspace per process: a VW workspace is not thread-safe and cannot be pickled. The policy
creates its workspace lazily in the process that first uses it and serializes predict and learn
with a lock. In a forked child it leaves the parent's workspace alone and opens its own from the
last saved or loaded model; if the parent had learned since then, the child raises
:class:`WorkspaceForkedError` instead of silently serving another model. Pickling raises
``TypeError``: save the model and load it in the other process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from explore.policy import is_slate
from explore.slate import Slate
from explore.vw_format import (
    ActionFeatures,
    CbLabel,
    LoggedSlate,
    RequestContext,
    cb_adf_lines,
    slate_examples,
)

logger = logging.getLogger(__name__)

Exploration = Literal["squarecb", "epsilon", "bag", "cover"]
EXPLORATIONS: tuple[str, ...] = ("squarecb", "epsilon", "bag", "cover")


class WorkspaceForkedError(RuntimeError):
    """The policy was used in a forked child after learning what no saved model holds."""


class VowpalWabbitSlate:
    """Slates from VW ``cb_explore_adf``, one sequential choice per position.

    Args (keyword-only):
        exploration: ``squarecb``, ``epsilon``, ``bag`` or ``cover``.
        epsilon: uniform exploration mass for ``epsilon``, ``bag`` and ``cover``, in [0, 1].
        gamma_scale: SquareCB's γ scale (> 0); larger exploits more.
        bag: number of bootstrapped policies for ``bag`` (>= 1).
        cover: number of policies in the cover for ``cover`` (>= 1).
        interactions: VW namespace interactions, by first letter (see ``explore.vw_format``).
        seed: VW's ``--random_seed`` (bootstrap draws while learning; never the slate sampler).
        model_path: a saved model to start from (``-i``), or None for a fresh one.
    """

    name = "vowpal_wabbit"

    def __init__(
        self,
        *,
        exploration: Exploration = "squarecb",
        epsilon: float = 0.05,
        gamma_scale: float = 10.0,
        bag: int = 5,
        cover: int = 5,
        interactions: tuple[str, ...] = ("ca", "ce", "ue"),
        seed: int = 0,
        model_path: str | Path | None = None,
        version: str = "1",
    ) -> None:
        if exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {EXPLORATIONS}; got {exploration!r}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
        if not gamma_scale > 0.0:
            raise ValueError(f"gamma_scale must be > 0; got {gamma_scale}")
        if bag < 1 or cover < 1:
            raise ValueError(f"bag and cover must be >= 1; got bag={bag}, cover={cover}")
        for pair in interactions:
            if len(pair) < 2 or not pair.isalpha():
                raise ValueError(f"interactions must be namespace letters like 'ca'; got {pair!r}")
        self.exploration = exploration
        self.epsilon = float(epsilon)
        self.gamma_scale = float(gamma_scale)
        self.bag = int(bag)
        self.cover = int(cover)
        self.interactions = tuple(interactions)
        self.seed = int(seed)
        self.version = version
        self._model_path = Path(model_path) if model_path is not None else None
        if self._model_path is not None and not self._model_path.is_file():
            raise FileNotFoundError(f"model_path must be a saved VW model; {model_path} is absent")
        self._workspace: Any = None
        self._owner_pid: int | None = None
        self._inherited: list[Any] = []
        self._lock = threading.Lock()
        self.updates_ = 0  # examples learned since the model was created or loaded

    # -- configuration -------------------------------------------------------------------------

    def vw_arguments(self) -> list[str]:
        """The VW command line of this policy (without ``-i``)."""
        args = ["--cb_explore_adf", "--quiet", "--random_seed", str(self.seed)]
        if self.exploration == "squarecb":
            args += ["--squarecb", "--gamma_scale", repr(self.gamma_scale)]
        elif self.exploration == "bag":
            args += ["--bag", str(self.bag), "--epsilon", repr(self.epsilon)]
        elif self.exploration == "cover":
            args += ["--cover", str(self.cover), "--epsilon", repr(self.epsilon)]
        else:
            args += ["--epsilon", repr(self.epsilon)]
        for pair in self.interactions:
            args += ["--interactions", pair]
        return args

    def params(self) -> dict[str, Any]:
        """The exploration parameters and the model state, as logged with every decision."""
        params: dict[str, Any] = {"backend": "vowpalwabbit", "exploration": self.exploration}
        if self.exploration == "squarecb":
            params["gamma_scale"] = self.gamma_scale
        else:
            params["epsilon"] = self.epsilon
        if self.exploration in ("bag", "cover"):
            params[self.exploration] = getattr(self, self.exploration)
        params["interactions"] = list(self.interactions)
        params["model"] = str(self._model_path) if self._model_path is not None else None
        params["updates"] = self.updates_
        return params

    # -- one workspace per process -------------------------------------------------------------

    def _open_workspace(self) -> Any:
        import vowpalwabbit

        args = self.vw_arguments()
        if self._model_path is not None:
            args += ["-i", str(self._model_path)]
        logger.info("opening a VW workspace in process %d: %s", os.getpid(), " ".join(args))
        return vowpalwabbit.Workspace(arg_list=args)

    def _adopt_process(self) -> None:
        """Leave a workspace inherited through ``fork`` to the parent that owns it."""
        pid = os.getpid()
        if self._workspace is None or self._owner_pid == pid:
            return
        # Never touch or finish the parent's workspace from here: keep a reference only.
        self._inherited.append(self._workspace)
        self._workspace = None
        self._lock = threading.Lock()  # the parent's lock may have been copied while held
        if self.updates_:
            raise WorkspaceForkedError(
                f"this VW policy learned {self.updates_} examples in process {self._owner_pid} "
                f"that no saved model holds, and process {pid} is a forked child; call "
                "save(path) before forking, or create the policy in the child with model_path"
            )

    @contextmanager
    def _exclusive(self) -> Iterator[Any]:
        """This process's workspace, held under the lock."""
        self._adopt_process()
        with self._lock:
            if self._workspace is None:
                self._workspace = self._open_workspace()
                self._owner_pid = os.getpid()
            yield self._workspace

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "VowpalWabbitSlate cannot be pickled: its VW workspace belongs to one process; "
            "save(path) here and create VowpalWabbitSlate(model_path=path, ...) in the other"
        )

    def close(self) -> None:
        """Finish this process's workspace (a later call opens a new one from the last model)."""
        self._adopt_process()
        with self._lock:
            if self._workspace is not None:
                self._workspace.finish()
                self._workspace = None
            if self.updates_:
                logger.warning(
                    "closing a VW policy with %d unsaved updates: the next use starts from %s",
                    self.updates_,
                    self._model_path or "a fresh model",
                )
                self.updates_ = 0

    def __enter__(self) -> VowpalWabbitSlate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deciding and replaying ----------------------------------------------------------------

    @staticmethod
    def _pmf(workspace: Any, examples: list[Any], size: int) -> np.ndarray:
        raw = np.asarray(workspace.predict(examples), dtype=np.float64)
        if raw.shape != (size,) or not np.all(raw >= 0) or not raw.sum() > 0:
            raise RuntimeError(f"VW returned a PMF of shape {raw.shape} for {size} candidates")
        return raw / raw.sum()

    def _walk(
        self,
        context: RequestContext,
        actions: ActionFeatures,
        *,
        rng: np.random.Generator | None = None,
        k: int = 0,
        slate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Sample K sequential choices with ``rng``, or replay ``slate``.

        Returns (chosen, cond_propensity, explored, params at that model state). The candidate
        lines are parsed once; each position predicts on the shared example and the candidates
        still available.
        """
        steps = slate.size if slate is not None else k
        chosen = np.empty(steps, dtype=np.int64)
        cond = np.empty(steps, dtype=np.float64)
        explored = np.zeros(steps, dtype=bool)
        lines = cb_adf_lines(context, actions)
        with self._exclusive() as workspace:
            params = self.params()  # under the lock: the model state the PMFs come from
            examples = workspace.parse(lines)
            try:
                remaining = list(range(len(actions)))
                subset = list(examples)  # the shared example, then the remaining candidates
                for step in range(steps):
                    pmf = self._pmf(workspace, subset, len(remaining))
                    if slate is not None:
                        pick = remaining.index(int(slate[step]))
                    else:
                        assert rng is not None
                        cdf = np.cumsum(pmf)
                        pick = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
                        pick = min(pick, len(remaining) - 1)
                    cond[step] = pmf[pick]
                    explored[step] = pick != int(np.argmax(pmf))
                    chosen[step] = remaining.pop(pick)
                    del subset[1 + pick]
            finally:
                workspace.finish_example(examples)
        return chosen, cond, explored, params

    def decide_with(
        self,
        context: RequestContext,
        actions: ActionFeatures,
        k: int,
        rng: np.random.Generator,
    ) -> Slate:
        """A slate of min(k, n) candidates sampled from VW's PMFs with the decision's ``rng``."""
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        k = min(k, len(actions))
        chosen, cond, explored, params = self._walk(context, actions, rng=rng, k=k)
        propensity = np.full(k, np.nan)
        propensity[0] = cond[0]  # the first position's marginal is its PMF
        return Slate(
            indices=chosen,
            scores=actions.scores[chosen],
            propensity=propensity,
            cond_propensity=cond,
            prefix_propensity=np.cumprod(cond),
            explored=explored,
            marginals_exact=k == 1,
            exploration=params,
        )

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        """The ``Policy`` interface: the scores are the only action features."""
        return self.decide_with(RequestContext(), ActionFeatures(scores=scores), k, rng)

    def slate_probability_with(
        self, context: RequestContext, actions: ActionFeatures, slate: np.ndarray
    ) -> float:
        """The probability of the ordered ``slate`` (indices into ``actions``), recomputed by
        replaying VW's PMFs; 0 for a slate this policy cannot produce."""
        slate = np.asarray(slate, dtype=np.int64)
        if not is_slate(slate, len(actions)):
            return 0.0
        _, cond, _, _ = self._walk(context, actions, slate=slate)
        return float(np.prod(cond))

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        return self.slate_probability_with(RequestContext(), ActionFeatures(scores=scores), slate)

    def pmf_with(self, context: RequestContext, actions: ActionFeatures) -> np.ndarray:
        """VW's PMF over all candidates for one slot, normalized in float64."""
        lines = cb_adf_lines(context, actions)
        with self._exclusive() as workspace:
            examples = workspace.parse(lines)
            try:
                return self._pmf(workspace, examples, len(actions))
            finally:
                workspace.finish_example(examples)

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Exact for k = 1 only (the PMF, shape (1, n)); sequential VW slates have no closed-form
        marginals beyond the first position."""
        if k != 1:
            raise NotImplementedError(
                f"VowpalWabbitSlate has exact marginals for k=1 only; got k={k}: use "
                "cond_propensity / prefix_propensity or slate_probability instead"
            )
        return self.pmf_with(RequestContext(), ActionFeatures(scores=scores))[None, :]

    # -- learning ------------------------------------------------------------------------------

    def _learn_lines(self, examples: Iterable[list[str]]) -> int:
        # The lock is taken per example: a slow source (a log being read) never blocks decisions.
        count = 0
        for lines in examples:
            with self._exclusive() as workspace:
                workspace.learn(lines)
                self.updates_ += 1
            count += 1
        return count

    def learn(
        self,
        context: RequestContext,
        actions: ActionFeatures,
        *,
        chosen: int,
        reward: float,
        probability: float,
    ) -> None:
        """One online update: candidate ``chosen`` was shown with ``probability`` and earned
        ``reward`` (VW minimizes cost = −reward)."""
        if not 0 <= chosen < len(actions):
            raise ValueError(f"chosen must index the {len(actions)} candidates; got {chosen}")
        label = CbLabel(action=int(chosen), cost=-float(reward), probability=float(probability))
        self._learn_lines([cb_adf_lines(context, actions, label=label)])

    def learn_logged(self, logged: Iterable[LoggedSlate], *, all_positions: bool = False) -> int:
        """Learn from logged decisions joined with their rewards (for example
        ``proplog.export_vw.logged_slates``): position 0 of each, or every position over the
        candidates not shown above it with its conditional propensity. Returns the number of
        examples learned."""
        return self._learn_lines(
            lines
            for slate in logged
            for lines in slate_examples(slate, all_positions=all_positions)
        )

    # -- the model file ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` atomically (a temporary file in the same folder, then a
        rename), and make it the model a forked child or a reload starts from."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with self._exclusive() as workspace:
            try:
                workspace.save(str(temporary))
                os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
            self._model_path = path
            self.updates_ = 0
        logger.info("saved the VW model to %s", path)
        return path

    def load(self, path: str | Path) -> None:
        """Replace the model with the one saved at ``path`` (this policy's options apply)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path must be a saved VW model; {path} is absent")
        self._adopt_process_for_load()
        with self._lock:
            previous, previous_path = self._workspace, self._model_path
            self._model_path = path
            try:
                self._workspace = self._open_workspace()
            except Exception:
                self._model_path = previous_path
                raise
            self._owner_pid = os.getpid()
            self.updates_ = 0
            if previous is not None:
                previous.finish()

    def _adopt_process_for_load(self) -> None:
        # Loading replaces the model, so unsaved updates of a parent process do not matter.
        if self._workspace is not None and self._owner_pid != os.getpid():
            self.updates_ = 0
            self._adopt_process()

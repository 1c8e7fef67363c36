"""Hot reload: a running app follows the log's production model version.

Owns :class:`ProductionFollower`. Every ``Settings.reload_seconds`` it reads the production
version (``loopbreak models promote``/``rollback``, :func:`loop.models.production_model`) in a
worker thread; when it differs from the last one seen and the version has a ``path``, it loads
that file in the same worker thread and then swaps in a new :class:`loop.service.DecisionService`
with one assignment to ``app.state.service``. A request takes the service once (a FastAPI
dependency) and keeps that object to the end, and a service's scorer never changes, so every
request is decided and recorded by one model, before or after the swap; none waits on the load.

The same follower takes an app off its cold start (:func:`api.deps.starting_model`): the first
promoted version replaces the cold-start scorer, and its service has the settings' policy.

A version whose file cannot be loaded is logged (once) and retried at the next poll; the old
model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Engine

from fm_core import Scorer
from loop.models import production_model
from loop.service import DecisionService

logger = logging.getLogger(__name__)

ServiceFactory = Callable[[Scorer], DecisionService]


class ProductionFollower:
    """Polls the production version and swaps the app's decision service when it changes."""

    def __init__(
        self,
        app: FastAPI,
        engine: Engine,
        *,
        interval_s: float,
        make_service: ServiceFactory,
        seen: str | None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.interval_s = interval_s
        self.make_service = make_service
        self.seen = seen
        self._failed: str | None = None
        self._task: asyncio.Task[None] | None = None

    def poll_once(self) -> bool:
        """Read production; load and swap in its model if it changed. True: swapped."""
        production = production_model(self.engine)
        if production is None or production[0] == self.seen:
            return False
        version, path = production
        if path is None:
            logger.warning("production version %s has no model file; still serving", version)
            self.seen = version
            return False
        from fm_core import load_scorer_file  # either kind; torch only for an FM file

        try:
            scorer = load_scorer_file(Path(path))
        except Exception:
            if self._failed != version:
                logger.exception("could not load production version %s from %s", version, path)
                self._failed = version
            return False
        if scorer.model_version != version:
            logger.warning("version %s's file %s says %s", version, path, scorer.model_version)
        self.app.state.service = self.make_service(scorer)  # one reference assignment
        logger.info("hot reload: now serving model %s (production was %s)", version, self.seen)
        self.seen = version
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.poll_once)
            except Exception:  # a database hiccup must not stop the follower
                logger.exception("hot reload: reading the production version failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

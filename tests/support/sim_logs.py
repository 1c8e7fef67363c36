"""Uniform-random slates shown in the simulated world, as scorer training data: each request
with its point-in-time history (plays strictly before it, oldest first), what was shown, what
was played, and the impressions a scorer fits on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fm_core import History, ScoreRequest, TrainingImpressions
from sim import Request, World
from sim.clock import EPOCH

K = 10
DAY = 86400.0
T0 = EPOCH.timestamp()

BeforeRecord = Callable[[Request, ScoreRequest, np.ndarray], None]


@dataclass
class Logs:
    """Uniform-random impressions of a run of requests, in time order."""

    requests: list[Request]
    score_requests: list[ScoreRequest]
    slates: np.ndarray  # (n, K)
    played: np.ndarray  # (n, K) bool
    play_items: np.ndarray
    play_times: np.ndarray  # POSIX seconds


class UniformLogging:
    """Shows uniformly random slates of K available items, records the world's outcomes, and
    keeps each user's plays."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.user_plays: dict[int, list[tuple[float, int, float, str]]] = defaultdict(list)
        self.all_plays: list[tuple[int, float]] = []

    def history(self, request: Request) -> History:
        events = sorted(e for e in self.user_plays[request.user] if e[0] < request.t)
        return History(
            item_ids=np.array([e[1] for e in events], dtype=np.int64),
            times=np.array([T0 + e[0] * DAY for e in events]),
            kinds=np.array(["play"] * len(events), dtype=object),
            values=np.array([e[2] for e in events]),
            sources=np.array([e[3] for e in events], dtype=object),
        )

    def score_request(self, request: Request) -> ScoreRequest:
        return ScoreRequest(
            user_id=request.user_id,
            time=T0 + request.t * DAY,
            device=request.device_name,
            country=request.country_code,
            local_hour=request.local_hour,
            history=self.history(request),
        )

    def run(
        self, start: float, end: float, n: int, before_record: BeforeRecord | None = None
    ) -> Logs:
        """``n`` requests in [start, end) days; ``before_record`` sees each request and its
        slate before the outcome enters the world's state."""
        requests = self.world.sample_requests(n, start=start, end=end, rng=self.rng)
        score_requests, slates, played = [], [], []
        first_play = len(self.all_plays)
        for request in requests:
            score_request = self.score_request(request)
            slate = self.rng.choice(self.world.available(request.t), size=K, replace=False)
            if before_record is not None:
                before_record(request, score_request, slate)
            outcome = self.world.respond(request, slate, self.rng)
            self.world.record(outcome)
            for play in outcome.plays:
                self.user_plays[request.user].append((play.t, play.item, play.seconds, play.source))
                self.all_plays.append((play.item, T0 + play.t * DAY))
            score_requests.append(score_request)
            slates.append(slate)
            played.append(outcome.played)
        new_plays = self.all_plays[first_play:]
        return Logs(
            requests=requests,
            score_requests=score_requests,
            slates=np.array(slates),
            played=np.array(played),
            play_items=np.array([p[0] for p in new_plays], dtype=np.int64),
            play_times=np.array([p[1] for p in new_plays]),
        )


def impressions(logs: Logs, *, with_plays: bool = True) -> TrainingImpressions:
    """One row per (request, position); ``with_plays`` False leaves out the play log that
    point-in-time popularity is counted from."""
    n = len(logs.requests)
    return TrainingImpressions(
        requests=logs.score_requests,
        request_index=np.repeat(np.arange(n), K),
        item_ids=logs.slates.ravel(),
        positions=np.tile(np.arange(K), n),
        labels=logs.played.ravel().astype(np.float64),
        play_item_ids=logs.play_items if with_plays else np.empty(0, dtype=np.int64),
        play_times=logs.play_times if with_plays else np.empty(0),
    )

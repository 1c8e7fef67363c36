"""The simulated world: requests, user behaviour on slates and search, and the ground truth.

Behaviour on a home slate (position-based model):

- position k (0-based) is examined with θ_k = 1/log2(k+2) (``examination="log"``) or 1/(k+1);
- an examined item i is played with P(play | u, i, x) = σ(logit(u, i, x)), times
  ``reconsumption`` if the user has played it before;
- a session carries an intent item j ~ softmax(logit(u, ·, x)) over the available catalog with
  probability ρ = ``intent_rate``; if j is examined on the slate it is played with ``intent_play``;
- if j was not examined on the slate, the user searches with probability ``search_rate`` with a
  query made from j's title words; if the search surface ranks j at r, it is examined with θ_r and
  played with ``intent_play``. Such plays have ``source="search"``;
- a play lasts a full watch with probability c(u, i), or is a sample (trailer-like) otherwise;
- with ``popularity_feedback`` > 0 (social proof), a title's logit grows with ln(1 + its plays so
  far), so what is shown and played becomes more appealing to everyone.

Ground truth. Plays at different positions do not interact, so the expected reward of a slate is

    V(x, s) = Σ_k θ_k · r(x, s_k),
    r(x, i) = [(1 − ρ q_i) p_i + ρ q_i p̃_i] · E[reward | play of i],

with q the intent distribution, p̃_i the intent play probability, and E[reward | play] = 1 for
``reward="play"`` or the expected completion for ``reward="completion"``. The best slate is the
top K items by r (θ is decreasing), and any policy with per-position marginals M (K × n) has value
Σ_k θ_k Σ_i M_ki r(x, i). All of these are as of the world's current state: call them before
``record`` applies the outcome of the same request.

Search and title pages are surfaces of their own (``surface_request``): a member types a query
made from an intent title's words (exact, partial or misspelled, ``sim.queries``), or opens a
title and sees its "more like this" row; ``item_rewards``, ``respond`` and the oracle then follow
``sim.surfaces``. A home request (or one without a query's intent or a source title) behaves as
above, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np

from sim.catalog import Catalog, make_catalog
from sim.clock import EPOCH
from sim.config import (
    COUNTRIES,
    DEVICES,
    LANGUAGES,
    UTC_OFFSET_HOURS,
    WorldConfig,
)
from sim.effects import ContextEffects, make_effects
from sim.queries import QUERY_KINDS, make_query
from sim.search import LexicalSearch
from sim.surfaces import SURFACES_WITH_ANCHOR, anchored_play_probability
from sim.users import Users, make_users
from vocab import DAYPARTS, N_DAYPARTS, SURFACES, daypart_hours, daypart_of_hour

_DAYPART_HOURS = tuple(daypart_hours(d) for d in range(N_DAYPARTS))
_FULL_WATCH = (0.85, 1.0)
_SAMPLE_WATCH = (0.02, 0.25)
_PRIMARY_DEVICE_SHARE = 0.8


@dataclass(frozen=True)
class Request:
    """A request to the recommender, as the world issues it. ``t`` is UTC world time in days."""

    request_id: int
    user: int
    t: float
    local_hour: float
    daypart: int
    device: int
    country: int
    surface: str = "home"
    query: str | None = None
    query_kind: str | None = None
    intent: int | None = None
    """The title a search was typed for: ground truth, never sent to the recommender."""
    source_item: int | None = None
    """The title whose page the member opened (surface "title")."""

    @property
    def anchor(self) -> int | None:
        """The title a search or title request is anchored on (``sim.surfaces``), else None."""
        if self.surface == "search":
            return self.intent
        if self.surface == "title":
            return self.source_item
        return None

    @property
    def user_id(self) -> str:
        return f"u{self.user}"

    @property
    def device_name(self) -> str:
        return DEVICES[self.device]

    @property
    def country_code(self) -> str:
        return COUNTRIES[self.country]

    @property
    def daypart_name(self) -> str:
        return DAYPARTS[self.daypart]

    @property
    def when(self) -> datetime:
        return EPOCH + timedelta(days=self.t)

    @property
    def local_time(self) -> str:
        """ISO local time with the country's UTC offset, as a client would send it."""
        offset = timezone(timedelta(hours=UTC_OFFSET_HOURS[self.country]))
        return self.when.astimezone(offset).isoformat()


@dataclass(frozen=True)
class Play:
    """One play the world produced. ``position`` is the slate position for ``source="rec"`` and
    the search rank for ``source="search"``."""

    item: int
    t: float
    seconds: float
    completion: float
    source: str
    position: int


@dataclass(frozen=True)
class Outcome:
    """What happened after a slate was shown. Arrays have one entry per slate position."""

    request: Request
    slate: np.ndarray
    examined: np.ndarray
    played: np.ndarray
    reward: np.ndarray
    plays: tuple[Play, ...]
    intent: int | None = None
    query: str | None = None
    search_results: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def examination_probabilities(n: int, kind: str) -> np.ndarray:
    """θ_k for 0-based positions k < n."""
    k = np.arange(n, dtype=np.float64)
    if kind == "log":
        return 1.0 / np.log2(k + 2.0)
    return 1.0 / (k + 1.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class World:
    """A deterministic simulated world. See the module docstring for its behaviour."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        rng = np.random.default_rng(self.config.seed)
        self.catalog: Catalog = make_catalog(self.config, rng)
        self.users: Users = make_users(self.config, self.catalog, rng)
        self.effects: ContextEffects = make_effects(
            rng, daypart=self.config.daypart_strength, device=self.config.device_strength
        )
        self.search_surface = LexicalSearch(self.catalog)
        log_pop = np.log(self.catalog.popularity)
        self._pop_z = (log_pop - log_pop.mean()) / log_pop.std()
        self._genre_count = self.catalog.genres.sum(axis=1)
        self._genre_share = self.catalog.genres / self._genre_count[:, None]
        self._user_language = np.array([self._language_of_country(c) for c in self.users.country])
        self._seen: list[set[int]] = [set() for _ in range(self.users.n_users)]
        self._plays = np.zeros(self.catalog.n_items)

    # ---- requests -------------------------------------------------------------------------

    def sample_requests(
        self, n: int, *, start: float, end: float, rng: np.random.Generator, surface: str = "home"
    ) -> list[Request]:
        """``n`` requests with UTC times in [start, end), sorted by time.

        Users arrive in proportion to their activity, at local hours drawn from their daypart
        rhythm, mostly on their primary device.
        """
        if not end > start:
            raise ValueError(f"end must be > start; got start={start}, end={end}")
        users = rng.choice(self.users.n_users, size=n, p=self.users.activity)
        times = np.full(n, np.nan)
        hours = np.zeros(n)
        dayparts = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        while todo.size:
            u = users[todo]
            day = rng.integers(int(np.floor(start)) - 1, int(np.ceil(end)) + 1, size=todo.size)
            dp = np.array([rng.choice(len(DAYPARTS), p=self.users.rhythm[x]) for x in u])
            lo = np.array([_DAYPART_HOURS[d][0] for d in dp])
            hi = np.array([_DAYPART_HOURS[d][1] for d in dp])
            hour = rng.uniform(lo, hi) % 24.0
            offset = np.array([UTC_OFFSET_HOURS[c] for c in self.users.country[u]])
            t = day + (hour - offset) / 24.0
            ok = (t >= start) & (t < end)
            times[todo[ok]] = t[ok]
            hours[todo[ok]] = hour[ok]
            dayparts[todo[ok]] = dp[ok]
            todo = todo[~ok]
        primary = rng.random(n) < _PRIMARY_DEVICE_SHARE
        other = rng.integers(len(DEVICES), size=n)
        devices = np.where(primary, self.users.device[users], other)
        order = np.argsort(times, kind="stable")
        return [
            Request(
                request_id=int(j),
                user=int(users[i]),
                t=float(times[i]),
                local_hour=float(hours[i]),
                daypart=daypart_of_hour(float(hours[i])),
                device=int(devices[i]),
                country=int(self.users.country[users[i]]),
                surface=surface,
            )
            for j, i in enumerate(order)
        ]

    def surface_request(self, request: Request, surface: str, rng: np.random.Generator) -> Request:
        """``request`` made on ``surface``: on "search" the member types a query for an intent
        title drawn from their intent distribution (its kind by ``query_kinds``); on "title"
        they open a title drawn from the same distribution. Other surfaces: the request with
        only its surface changed. Draws from ``rng`` only for search and title."""
        if surface not in SURFACES:
            raise ValueError(f"surface must be one of {SURFACES}; got {surface!r}")
        if surface not in SURFACES_WITH_ANCHOR:
            return replace(request, surface=surface)
        items, q = self.intent_distribution(request)
        anchor = int(items[rng.choice(len(items), p=q)])
        if surface == "title":
            return replace(request, surface="title", source_item=anchor)
        kind = QUERY_KINDS[int(rng.choice(len(QUERY_KINDS), p=np.asarray(self.config.query_kinds)))]
        words = [self.catalog.vocab[j] for j in self.catalog.title_tokens[anchor]]
        query = make_query(words, kind, rng)
        return replace(request, surface="search", query=query, query_kind=kind, intent=anchor)

    def sample_surface_requests(
        self, n: int, *, start: float, end: float, rng: np.random.Generator, surface: str
    ) -> list[Request]:
        """``n`` requests on ``surface`` (``sample_requests``, then ``surface_request``)."""
        requests = self.sample_requests(n, start=start, end=end, rng=rng)
        return [self.surface_request(r, surface, rng) for r in requests]

    def title_words(self, item: int) -> list[str]:
        """The words of ``item``'s title, in order."""
        return [self.catalog.vocab[j] for j in self.catalog.title_tokens[item]]

    def available(self, t: float) -> np.ndarray:
        """Item ids released at or before ``t``."""
        return self.catalog.available(t)

    # ---- behaviour ------------------------------------------------------------------------

    def examination(self, n: int) -> np.ndarray:
        """θ_k for the first ``n`` positions."""
        return examination_probabilities(n, self.config.examination)

    def affinity(self, request: Request, items: np.ndarray) -> np.ndarray:
        """Logit of P(play | examined) for ``items`` before reconsumption, for one request."""
        c, u = self.config, request.user
        items = np.asarray(items, dtype=np.int64)
        taste = self._genre_share[items] @ self.users.taste[u]
        taste_lift = np.log(taste * self.catalog.genres.shape[1] + 1e-3)
        user_latent = self.users.latent[u] + (
            c.taste_drift_per_year * request.t / 365.0 * self.users.drift[u]
        )
        latent = self.catalog.latent[items] @ user_latent
        share = self._genre_share[items]
        context = share @ self.effects.daypart[:, request.daypart]
        context = context + share @ self.effects.device[:, request.device]
        age = request.t - self.catalog.release_day[items]
        fresh = np.where(
            self.catalog.release_day[items] >= 0.0,
            c.freshness_bonus * np.exp(-np.maximum(age, 0.0) / c.freshness_days),
            0.0,
        )
        language = c.language_bonus * (self.catalog.language[items] == self._user_language[u])
        social = (
            c.popularity_feedback * np.log1p(self._plays[items]) if c.popularity_feedback else 0
        )
        return (
            c.base_logit
            + c.popularity_weight * self._pop_z[items]
            + c.taste_weight * taste_lift
            + c.latent_weight * latent
            + context
            + fresh
            + language
            + social
        )

    def _reconsumption(self, request: Request, items: np.ndarray) -> np.ndarray:
        seen = self._seen[request.user]
        if not seen:
            return np.ones(len(items))
        was_seen = np.isin(items, np.fromiter(seen, dtype=np.int64, count=len(seen)))
        return np.where(was_seen, self.config.reconsumption, 1.0)

    def play_probability(self, request: Request, items: np.ndarray) -> np.ndarray:
        """P(play | examined, not the session's intent) for ``items``."""
        items = np.asarray(items, dtype=np.int64)
        return _sigmoid(self.affinity(request, items)) * self._reconsumption(request, items)

    def intent_distribution(self, request: Request) -> tuple[np.ndarray, np.ndarray]:
        """(items, q): the available items and the probability that each is the intent."""
        items = self.available(request.t)
        logits = self.affinity(request, items)
        q = np.exp(logits - logits.max())
        return items, q / q.sum()

    def completion_probability(self, request: Request, items: np.ndarray) -> np.ndarray:
        """P(full watch | play) for ``items``."""
        items = np.asarray(items, dtype=np.int64)
        lift = self.affinity(request, items) - self.config.base_logit
        return _sigmoid(-0.5 + 0.5 * lift)

    def _expected_value_of_play(self, request: Request, items: np.ndarray) -> np.ndarray:
        if self.config.reward == "play":
            return np.ones(len(items))
        c = self.completion_probability(request, items)
        return c * np.mean(_FULL_WATCH) + (1.0 - c) * np.mean(_SAMPLE_WATCH)

    # ---- ground truth -----------------------------------------------------------------------

    def item_rewards(self, request: Request, items: np.ndarray) -> np.ndarray:
        """r(x, i): expected reward of item i when examined, for each of ``items``."""
        items = np.asarray(items, dtype=np.int64)
        if request.anchor is not None:
            return self._anchored_play(request, items) * self._expected_value_of_play(
                request, items
            )
        rho = self.config.intent_rate
        p = self.play_probability(request, items)
        p_intent = self.config.intent_play * self._reconsumption(request, items)
        all_items, q_all = self.intent_distribution(request)
        q = np.zeros(len(items))
        position = np.searchsorted(all_items, items)
        position = np.clip(position, 0, len(all_items) - 1)
        found = all_items[position] == items
        q[found] = q_all[position[found]]
        play = (1.0 - rho * q) * p + rho * q * p_intent
        return play * self._expected_value_of_play(request, items)

    def _anchored_play(self, request: Request, items: np.ndarray) -> np.ndarray:
        """P(play | examined) on a search or title request (``sim.surfaces``)."""
        c = self.config
        anchor = request.anchor
        if anchor is None:
            raise ValueError(
                f"request {request.request_id} on {request.surface!r} has no intent or source title"
            )
        return anchored_play_probability(
            surface=request.surface,
            anchor=anchor,
            items=items,
            affinity=self.affinity(request, items),
            reconsumption=self._reconsumption(request, items),
            latent=self.catalog.latent,
            similarity_weight=(
                c.search_similarity if request.surface == "search" else c.title_similarity
            ),
            intent_play=c.intent_play,
            search_focus=c.search_focus,
        )

    def expected_reward(self, request: Request, slate: np.ndarray) -> float:
        """V(x, s): expected reward of showing ``slate`` (item ids, top first) for ``request``."""
        slate = np.asarray(slate, dtype=np.int64)
        theta = self.examination(len(slate))
        return float(theta @ self.item_rewards(request, slate))

    def policy_value(self, request: Request, items: np.ndarray, marginals: np.ndarray) -> float:
        """Expected reward of a policy whose P(item ``items[i]`` at position k) is
        ``marginals[k, i]``."""
        marginals = np.asarray(marginals, dtype=np.float64)
        theta = self.examination(marginals.shape[0])
        return float(theta @ marginals @ self.item_rewards(request, items))

    def oracle_slate(
        self, request: Request, k: int, candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """The best slate of ``k`` items among ``candidates`` (default: all available)."""
        items = self.available(request.t) if candidates is None else np.asarray(candidates)
        r = self.item_rewards(request, items)
        order = np.lexsort((items, -r))
        return items[order][:k]

    # ---- responses ----------------------------------------------------------------------------

    def respond(self, request: Request, slate: np.ndarray, rng: np.random.Generator) -> Outcome:
        """Sample what the user does with ``slate``. Pure: the world's state is unchanged until
        ``record(outcome)``."""
        c = self.config
        slate = np.asarray(slate, dtype=np.int64)
        k = len(slate)
        if request.anchor is not None:
            return self._respond_anchored(request, slate, rng)
        intent: int | None = None
        if rng.random() < c.intent_rate:
            items, q = self.intent_distribution(request)
            intent = int(items[rng.choice(len(items), p=q)])
        examined = rng.random(k) < self.examination(k)
        p_play = self.play_probability(request, slate)
        p_intent = c.intent_play * self._reconsumption(request, slate)
        p_play = np.where(slate == intent, p_intent, p_play)
        played = examined & (rng.random(k) < p_play)
        plays: list[Play] = []
        reward = np.zeros(k)
        for position in np.flatnonzero(played):
            play = self._play(request, int(slate[position]), rng, "rec", int(position))
            plays.append(play)
            reward[position] = 1.0 if c.reward == "play" else play.completion

        query: str | None = None
        results = np.empty(0, dtype=np.int64)
        intent_examined = intent is not None and bool(np.any(examined & (slate == intent)))
        if intent is not None and not intent_examined and rng.random() < c.search_rate:
            query = self.search_surface.make_query(intent, rng, noise=c.query_noise)
            results = self.search_surface.search(query, t=request.t, limit=c.search_results)
            hit = np.flatnonzero(results == intent)
            if hit.size:
                rank = int(hit[0])
                theta = self.examination(rank + 1)[rank]
                p = c.intent_play * self._reconsumption(request, np.array([intent]))[0]
                if rng.random() < theta and rng.random() < p:
                    plays.append(self._play(request, intent, rng, "search", rank))
        return Outcome(
            request=request,
            slate=slate,
            examined=examined,
            played=played,
            reward=reward,
            plays=tuple(plays),
            intent=intent,
            query=query,
            search_results=results,
        )

    def _respond_anchored(
        self, request: Request, slate: np.ndarray, rng: np.random.Generator
    ) -> Outcome:
        """What the member does with a search or title slate: each position examined with θ_k,
        an examined title played with its ``_anchored_play`` probability."""
        k = len(slate)
        examined = rng.random(k) < self.examination(k)
        played = examined & (rng.random(k) < self._anchored_play(request, slate))
        reward = np.zeros(k)
        plays: list[Play] = []
        for position in np.flatnonzero(played):
            play = self._play(request, int(slate[position]), rng, "rec", int(position))
            plays.append(play)
            reward[position] = 1.0 if self.config.reward == "play" else play.completion
        return Outcome(
            request=request,
            slate=slate,
            examined=examined,
            played=played,
            reward=reward,
            plays=tuple(plays),
            intent=request.intent,
            query=request.query,
        )

    def _play(
        self, request: Request, item: int, rng: np.random.Generator, source: str, position: int
    ) -> Play:
        full = rng.random() < self.completion_probability(request, np.array([item]))[0]
        completion = float(rng.uniform(*(_FULL_WATCH if full else _SAMPLE_WATCH)))
        delay_days = (1.0 + position + (5.0 if source == "search" else 0.0)) / (24.0 * 60.0)
        return Play(
            item=item,
            t=request.t + delay_days,
            seconds=completion * float(self.catalog.runtime_min[item]) * 60.0,
            completion=completion,
            source=source,
            position=position,
        )

    def record(self, outcome: Outcome) -> None:
        """Apply an outcome to the world's state: played items count as seen."""
        self._seen[outcome.request.user].update(p.item for p in outcome.plays)
        for play in outcome.plays:
            self._plays[play.item] += 1.0

    @staticmethod
    def _language_of_country(country: int) -> int:
        return list(dict.fromkeys(LANGUAGES)).index(LANGUAGES[country])

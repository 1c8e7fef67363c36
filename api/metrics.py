"""Prometheus metrics of one app instance, in its own registry (so that tests can build many
apps in one process): requests answered and refused, 5xx by cause, decisions by policy and
whether they explored, the realized exploration parameters and the propensity distribution,
and the time each write to the log takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from proplog.schema import DecisionCreate


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def observe_decision(self, record: DecisionCreate, write_seconds: float) -> None:
        """What operators watch of a decision made (not a replay): its policy, whether it
        explored, its realized exploration parameters, its propensities and its write time."""
        policy = record.policy_name
        explored = sum(1 for position in record.slate if position.explored)
        self.decisions_made.labels(policy, str(explored > 0).lower()).inc()
        if explored:
            self.explored_positions.labels(policy).inc(explored)
        for name, value in record.exploration.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.exploration_parameter.labels(policy, name).observe(float(value))
        propensities = self.propensity.labels(policy)
        for position in record.slate:
            propensities.observe(
                position.propensity if position.propensity is not None else position.cond_propensity
            )
        self.write_seconds.labels("decision").observe(write_seconds)

    def __post_init__(self) -> None:
        self.decisions = Counter(
            "loopbreak_decisions",
            "Decisions answered",
            ["surface", "replayed"],
            registry=self.registry,
        )
        self.events = Counter(
            "loopbreak_events", "Events received", ["kind", "source", "created"],
            registry=self.registry,
        )  # fmt: skip
        self.rejected = Counter(
            "loopbreak_rejected_requests", "Requests refused", ["status"], registry=self.registry
        )
        self.http_errors = Counter(
            "loopbreak_http_errors",
            "Requests answered 5xx, by status and cause (overloaded, database_unavailable, "
            "internal, ...)",
            ["status", "cause"],
            registry=self.registry,
        )
        self.activations = Counter(
            "loopbreak_activations",
            "Activations of deferred decisions, by outcome (activated, replayed, expired, "
            "not_deferred)",
            ["outcome"],
            registry=self.registry,
        )
        self.decisions_made = Counter(
            "loopbreak_decisions_made",
            "Decisions made and logged (not replays), by policy and whether any position was "
            "explored",
            ["policy", "explored"],
            registry=self.registry,
        )
        self.explored_positions = Counter(
            "loopbreak_explored_positions",
            "Slate positions filled by exploration rather than by the ranking, by policy",
            ["policy"],
            registry=self.registry,
        )
        self.exploration_parameter = Histogram(
            "loopbreak_exploration_parameter",
            "The exploration parameters each decision was made with, as realized (a budget "
            "calibrates them per request): epsilon, temperature, uniform_mix, ...",
            ["policy", "parameter"],
            buckets=(0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.propensity = Histogram(
            "loopbreak_propensity",
            "The logged propensity of each position shown: its exact marginal probability "
            "where the policy has one, else its conditional one; small values make "
            "off-policy estimates noisy",
            ["policy"],
            buckets=(1e-4, 1e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 0.99, 1.0),
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "loopbreak_log_write_seconds",
            "Time from handing a record to the log to its durable commit, by record kind",
            ["kind"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0),
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "loopbreak_decision_seconds",
            "Time to decide and record a decision",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )

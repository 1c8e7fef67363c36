"""Prometheus metrics of one app instance, in its own registry (so that tests can build many
apps in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

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
            "Requests answered 5xx, by status and cause (database_unavailable, internal)",
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
        self.decision_seconds = Histogram(
            "loopbreak_decision_seconds",
            "Time to decide and record a decision",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )

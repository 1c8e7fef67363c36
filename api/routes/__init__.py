"""The routers, one per resource: decisions (and their activation), events, and the service's
health and metrics."""

from api.routes import activation, decisions, events, health

ROUTERS = (decisions.router, activation.router, events.router, health.router)

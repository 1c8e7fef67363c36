"""The routers, one per resource: decisions, events, and the service's health and metrics."""

from api.routes import decisions, events, health

ROUTERS = (decisions.router, events.router, health.router)

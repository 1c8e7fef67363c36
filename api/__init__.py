"""The HTTP service: the FastAPI app factory, its dependencies, routers, schemas, settings and
metrics. The decision logic itself lives in :mod:`loop`."""

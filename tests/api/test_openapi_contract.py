"""The service keeps its OpenAPI document: schemathesis generates requests from the document
(valid ones, and ones that break each rule) against the real app on a SQLite log, and checks
every answer: no server error, every status and body declared, every header and content type as
declared, and schema-breaking requests refused.

All of schemathesis's checks run but one, ``positive_data_acceptance`` (a request that the
document allows must not be refused). The document cannot state the rules that relate a request
to the log: candidates must be items of the served catalog, ``k`` at most the number of
candidates, an event's decision must be stored and show its item. A schema-valid request that
breaks one of them is refused with 422 or 404, naming the field, and that is correct.

Bounded to :data:`EXAMPLES` examples per operation so that ``make test`` stays quick; the same
test with more examples is ``LOOPBREAK_SCHEMA_EXAMPLES=1000 python -m pytest
tests/api/test_openapi_contract.py``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from api_keys import bearer, new_token
from hypothesis import HealthCheck
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.sim_bridge import catalog_from_world
from sim import World, WorldConfig

EXAMPLES = int(os.environ.get("LOOPBREAK_SCHEMA_EXAMPLES", "100"))


CONTRACT_DIR = Path(tempfile.mkdtemp(prefix="loopbreak-contract-"))
atexit.register(shutil.rmtree, CONTRACT_DIR, ignore_errors=True)
CONTRACT_DB = f"sqlite:///{CONTRACT_DIR / 'api.db'}"
"""The app's log (a fresh file; schemathesis keeps the app's lifespan open to the process end)."""

APP = create_app(
    Settings(database_url=CONTRACT_DB, max_k=20, reload_seconds=0),
    scorer=PopularityAffinityScorer(
        catalog_from_world(World(WorldConfig(seed=7, n_items=120, n_users=60))),
        model_version="contract",
    ),
)  # nothing is opened before the first request: create_app touches no database
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


TOKEN = new_token(CONTRACT_DB)
"""A key with every scope in the app's log, sent with every generated request."""


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_answer_is_declared_in_the_openapi_document(
    case: schemathesis.Case,
) -> None:
    case.call_and_validate(headers=bearer(TOKEN), excluded_checks=[positive_data_acceptance])


def test_the_docs_need_no_network(tmp_path: Path, small_catalog: ItemCatalog) -> None:
    """``/docs`` and ``/redoc`` load their scripts and styles from the service itself."""
    from fastapi.testclient import TestClient

    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}"),
        scorer=PopularityAffinityScorer(small_catalog, model_version="docs"),
    )
    with TestClient(app) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            assert "http://" not in html.text and "https://" not in html.text, page
        assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        assert client.get("/static-offline-docs/redoc.standalone.js").status_code == 200


def _is_uuid(value: object) -> bool:
    """A valid key (an invalid one is the case's point: it stays as generated)."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _is_identifier(value: str) -> bool:
    return 1 <= len(value) <= 128 and "\x00" not in value


class ContractWorkflow(schema.as_state_machine()):  # type: ignore[misc]
    """The stateful phase: sequences of calls that follow the document's links (a decision's
    id into an event, into its activation), each answer checked as above."""

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"headers": bearer(TOKEN)}

    def before_call(self, case: schemathesis.Case) -> None:
        """Fresh idempotency keys: a generated ``decision_id`` or ``event_id`` may repeat one
        stored by an earlier example, which turns a 201 into a 200 replay (or a 409) and so
        changes which links the machine may follow next: hypothesis would see the same
        choices lead elsewhere and stop with FlakyStrategyDefinition. Replays are covered by
        the stateless run and tests/api/test_api.py."""
        if not isinstance(case.body, dict) or case.method.upper() != "POST":
            return
        if case.path == "/v1/decisions" and _is_uuid(case.body.get("decision_id")):
            case.body["decision_id"] = str(uuid.uuid4())
        event_id = case.body.get("event_id")
        if case.path == "/v1/events" and isinstance(event_id, str) and _is_identifier(event_id):
            case.body["event_id"] = f"stateful-{uuid.uuid4()}"  # a valid one stays valid

    def validate_response(
        self,
        response: Any,
        case: schemathesis.Case,
        additional_checks: Any = None,
        **kwargs: Any,
    ) -> None:
        case.validate_response(
            response,
            additional_checks=additional_checks,
            excluded_checks=[positive_data_acceptance],
            transport_kwargs=kwargs or None,
        )


TestStatefulWorkflows = ContractWorkflow.TestCase
TestStatefulWorkflows.settings = hypothesis.settings(
    max_examples=max(EXAMPLES // 5, 10),
    stateful_step_count=5,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)

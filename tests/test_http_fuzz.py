"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis), against a
live console: valid and invalid requests to every operation, no 5xx, and the console still serves
afterwards. Bounded: MAX_EXAMPLES requests in all, a few seconds."""

from __future__ import annotations

import schemathesis
from helpers import wait_until
from http_helpers import MakeServed
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

MAX_EXAMPLES = 100
FAST_STOPPING = """
    [processes.ticker]
    cmd = "python3 -c 'import time\\nwhile True: print(\\"tick\\", flush=True); time.sleep(0.05)'"
    stop_timeout = 2
"""


def test_fuzzing_from_the_openapi_document_finds_no_server_error(served: MakeServed) -> None:
    s = served(FAST_STOPPING)
    admin = s.client(s.admin_key)
    # /api/wait blocks by design until its timeout (up to a day) when what it waits for does not
    # come: its argument checks are tested in test_agents.py. /api/shutdown stops the console
    # (tested in test_remote.py).
    schema = schemathesis.openapi.from_dict(admin.get("/openapi.json").json()).exclude(
        path=["/api/wait", "/api/shutdown"]
    )
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )
    answered: dict[int, int] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def request_never_breaks_the_server(case: schemathesis.Case) -> None:
        response = case.call(
            base_url=s.url, headers={"Authorization": f"Bearer {s.admin_key}"}, timeout=30
        )
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, case.path, response.text[:300])

    request_never_breaks_the_server()
    assert sum(answered.values()) >= MAX_EXAMPLES // 2, answered
    assert any(400 <= code < 500 for code in answered), answered  # invalid input was tried
    # Still serving, and the console still runs its process.
    assert admin.get("/health").json()["result"]["status"] == "ok"
    admin.post("/api/processes/ticker/start")
    wait_until(lambda: admin.get("/api/processes/ticker").json()["result"]["state"] == "running")
    assert s.console.audit.verify().ok

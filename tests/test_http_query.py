"""POST /api/query: the query op over HTTP (read scope), the same document as the CLI's --json."""

from __future__ import annotations

from helpers import wait_until
from http_helpers import MakeServed


def test_post_api_query_answers_with_the_document_and_its_errors(served: MakeServed) -> None:
    s = served()
    reader = s.client(s.key("read"))
    wait_until(lambda: s.console.process("ticker").stdout_lines >= 3)
    reply = reader.post(
        "/api/query", json={"query": "SELECT count(*), line FROM ticker GROUP BY line"}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert set(result) == {"columns", "rows", "scanned", "elapsed_ms", "truncated"}
    assert result["columns"] == ["count(*)", "line"] and result["rows"][0][1] == "tick"
    bad = reader.post("/api/query", json={"query": "SELECT * FROM ticker WHERE ("})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["code"] == "query_syntax" and error["position"] == 28
    assert reader.post("/api/query", json={"query": "SELECT * FROM nope"}).status_code == 404
    assert reader.post("/api/query", json={"query": "x", "deadline": 61}).status_code == 422
    assert s.client().post("/api/query", json={"query": "SELECT * FROM ticker"}).status_code == 401

"""`/v1/requests`, probes and bad input against the running gateway, over plain HTTP."""

from __future__ import annotations

import httpx

from relaychain.gateway import ApiKeys, GatewayLimits
from relaychain.settings import Settings
from tests.gateway.conftest import RunningGateway, start_gateway, stop_gateway
from tests.support.instant_model import instant_model
from tests.support.openai_server import OpenAITestServer, Reply

REQUEST = {"business": "product_review", "input": "Boils fast", "vars": {"product": "Kettle", "rating": "4"}}


async def test_json_answer_then_status_then_no_cancel(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/livez")).status_code == 200
        answer = (await http.post("/v1/requests", json=REQUEST)).json()
        assert answer["type"] == "response" and answer["output"]["sentiment"] == "positive"
        status = (await http.get(f"/v1/requests/{answer['request_id']}")).json()
        assert status["status"] == "done" and status["answer"]["id"] == answer["id"]
        late = await http.delete(f"/v1/requests/{answer['request_id']}")
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_answered"
        assert (await http.get("/v1/requests/nope")).json()["error"]["code"] == "unknown_request"


async def test_sse_stream_has_progress_deltas_then_the_answer(gateway: RunningGateway) -> None:
    events: list[str] = []
    async with (
        httpx.AsyncClient(base_url=gateway.url) as http,
        http.stream("POST", "/v1/requests", json={**REQUEST, "stream": True}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("event: ") async for line in response.aiter_lines() if line.startswith("event:")]
    assert events[0] == "request" and events[-1] == "answer"
    assert "progress" in events and "delta" in events
    assert events.index("delta") < events.index("answer")


async def test_delete_cancels_a_request_in_flight(gateway: RunningGateway) -> None:
    gateway.model_server.script(instant_model("product_review"), Reply(text="{}", delay_s=30))
    async with (
        httpx.AsyncClient(base_url=gateway.url) as http,
        http.stream("POST", "/v1/requests", json={**REQUEST, "stream": True}) as response,
    ):
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and "request_id" in line:
                request_id = line.split('"request_id":"')[1].split('"')[0]
                break
        async for line in lines:
            if line == "event: progress":
                break
        cancelling = await http.delete(f"/v1/requests/{request_id}")
        assert cancelling.status_code == 202 and cancelling.json()["status"] == "cancelling"
        last = [line async for line in lines if line.startswith("data: ")][-1]
    assert '"type":"cancelled"' in last and '"reason":"cancelled"' in last


async def test_bad_input_gets_a_status_and_a_json_body(
    gateway_settings: Settings, model_server: OpenAITestServer
) -> None:
    running, task = await start_gateway(
        gateway_settings,
        model_server,
        keys=ApiKeys({"acme": "k-acme"}),
        limits=GatewayLimits(max_body_bytes=2048, max_streams_per_key=1),
    )
    acme = {"Authorization": "Bearer k-acme"}
    try:
        async with httpx.AsyncClient(base_url=running.url) as http:
            cases = [
                (await http.post("/v1/requests", json=REQUEST), 401, "missing_api_key"),
                (
                    await http.post("/v1/requests", json=REQUEST, headers={"Authorization": "Bearer x"}),
                    401,
                    "invalid_api_key",
                ),
                (await http.post("/v1/requests", content=b"{not json", headers=acme), 400, "malformed_json"),
                (
                    await http.post("/v1/requests", json={**REQUEST, "input": "x" * 4096}, headers=acme),
                    413,
                    "body_too_large",
                ),
                (
                    await http.post("/v1/requests", json={**REQUEST, "business": "nope"}, headers=acme),
                    404,
                    "unknown_business",
                ),
                (
                    await http.post("/v1/requests", json={"business": "product_review"}, headers=acme),
                    422,
                    "invalid_request",
                ),
                (await http.get("/v1/nothing-here"), 404, "not_found"),
            ]
            for response, status, code in cases:
                assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
            model_server.script(instant_model("product_review"), Reply(text="{}", delay_s=30))
            async with http.stream("POST", "/v1/requests", json={**REQUEST, "stream": True}, headers=acme) as first:
                assert first.status_code == 200
                second = await http.post("/v1/requests", json={**REQUEST, "stream": True}, headers=acme)
                assert (second.status_code, second.json()["error"]["code"]) == (429, "too_many_streams")
    finally:
        await stop_gateway(task)

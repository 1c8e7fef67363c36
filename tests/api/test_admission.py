"""The admission limiter (:mod:`api.admission`) on its own: a free slot is taken at once, a
waiter gets the slot of the request that finishes (first come, first served), a waiter whose
timeout passes is refused and never holds a slot, and a cancelled waiter gives back a slot it was
handed; in the app, a shed request is answered 503 ``overloaded`` before its body is read."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from api.admission import AdmissionLimiter


def test_slots_pass_in_order_and_a_timed_out_waiter_holds_none() -> None:
    async def scenario() -> None:
        limiter = AdmissionLimiter(2, timeout_s=0.2)
        assert await limiter.acquire() and await limiter.acquire()
        first = asyncio.create_task(limiter.acquire())
        second = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        assert limiter.waiting == 2 and limiter.in_flight == 2
        limiter.release()  # handed to the first waiter, not to the pool
        assert await first
        assert limiter.in_flight == 2 and limiter.waiting == 1
        assert not await second  # its 0.2 s passed with no slot free
        limiter.release()
        limiter.release()
        assert limiter.in_flight == 0 and limiter.waiting == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_back_what_it_was_handed() -> None:
    async def scenario() -> None:
        limiter = AdmissionLimiter(1, timeout_s=5.0)
        assert await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        limiter.release()
        await asyncio.gather(waiter, return_exceptions=True)
        assert limiter.in_flight == 0  # nothing leaked
        assert await limiter.acquire()

    asyncio.run(scenario())


def test_with_no_timeout_a_full_limiter_refuses_at_once() -> None:
    async def scenario() -> None:
        limiter = AdmissionLimiter(1, timeout_s=0.0)
        assert await limiter.acquire()
        assert not await limiter.acquire()

    asyncio.run(scenario())


def test_the_app_sheds_with_503_overloaded_and_counts_it(client: TestClient) -> None:
    limiter = next(m.kwargs["limiter"] for m in client.app.user_middleware if "limiter" in m.kwargs)
    limiter.in_flight = limiter.limit  # every slot taken
    limiter.timeout_s = 0.0
    try:
        response = client.post("/v1/decisions", json={"user_id": "u1", "surface": "home"})
        health = client.get("/healthz")
    finally:
        limiter.in_flight = 0
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"] == [
        {"field": "server", "message": response.json()["message"], "type": "overloaded"}
    ]
    assert health.status_code == 200  # never held back
    metrics = client.get("/metrics").text
    assert 'loopbreak_http_errors_total{cause="overloaded",status="503"} 1.0' in metrics
    assert (
        client.post("/v1/decisions", json={"user_id": "u1", "surface": "home"}).status_code == 201
    )

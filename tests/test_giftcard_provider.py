"""The gift-card client against the provider sandbox, a real subprocess spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.adapters.giftcard_client import (
    GiftCardOrder,
    GiftCardProvider,
    GiftCardRequest,
    ProviderRejected,
    ProviderUnavailable,
)
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import free_port

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "poll_interval_s": 0.02}


class Observed:
    """Records every `observe(operation, outcome, seconds)` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def __call__(self, operation: str, outcome: str, seconds: float) -> None:
        self.calls.append((operation, outcome, seconds))

    def outcomes(self, operation: str = "create") -> list[str]:
        return [outcome for op, outcome, _ in self.calls if op == operation]


def provider(sandbox: SandboxProcess, **overrides: Any) -> GiftCardProvider:
    """A client for the sandbox with test-sized backoffs."""
    options: dict[str, Any] = {**FAST, **overrides}
    api_key = options.pop("api_key", sandbox.api_key)
    return GiftCardProvider(options.pop("base_url", sandbox.url), api_key, **options)


def gift(key: str = "idem-1", **fields: Any) -> GiftCardRequest:
    """A 25.00 EUR gift card request."""
    values: dict[str, Any] = {
        "idempotency_key": key,
        "external_id": f"reward-{key}",
        "customer_ref": "cust-42",
        "amount_cents": 2500,
        "currency": "EUR",
        "message": "Sorry for the late delivery",
    }
    return GiftCardRequest(**{**values, **fields})


def order_once(sandbox: SandboxProcess, request: GiftCardRequest, **overrides: Any) -> Any:
    """`order(request)` on a fresh client; returns the order or the exception raised."""

    async def go() -> GiftCardOrder | Exception:
        async with provider(sandbox, **overrides) as client:
            try:
                return await client.order(request)
            except (ProviderRejected, ProviderUnavailable) as exc:
                return exc

    return asyncio.run(go())


def raw_post(sandbox: SandboxProcess, body: object, headers: dict[str, str]) -> tuple[int, Any]:
    """POST /v1/orders with urllib; the status, the headers and the JSON body."""
    request = urllib.request.Request(
        f"{sandbox.url}/v1/orders", data=json.dumps(body).encode(), method="POST"
    )
    for name, value in {"Content-Type": "application/json", **headers}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, (response.headers, json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, (exc.headers, json.loads(exc.read()))


def test_create_then_replay_returns_the_same_order(sandbox):
    async def go() -> tuple[GiftCardOrder, GiftCardOrder, GiftCardOrder]:
        async with provider(sandbox) as client:
            first = await client.order(gift())
            again = await client.order(gift())
            return first, again, await client.status(first.provider_order_id)

    first, again, seen = asyncio.run(go())
    assert first == again == seen
    assert first.status == "completed"
    assert first.provider_order_id.startswith("ord_")
    assert first.claim_url is not None and first.claim_url.startswith(f"{sandbox.url}/claim/")
    assert first.code_ref == f"vault:giftcards/{first.provider_order_id}"
    state = sandbox.orders()
    assert state["created"] == 1 and state["requests"] == {"create": 2, "status": 1}
    assert state["idempotency_keys"] == {"idem-1": first.provider_order_id}
    (stored,) = state["orders"]
    assert stored["amount"] == {"value": 2500, "currency": "EUR"}
    assert stored["recipient"] == {"customer_ref": "cust-42"}
    assert stored["external_id"] == "reward-idem-1" and stored["created_at"].endswith("Z")


def test_sandbox_speaks_the_provider_protocol(sandbox):
    body = {"external_id": "r-1", "recipient": {"customer_ref": "c-1"},
            "amount": {"value": 500, "currency": "EUR"}}  # fmt: skip
    auth = {"Authorization": f"Bearer {sandbox.api_key}"}
    status, (headers, created) = raw_post(sandbox, body, {**auth, "Idempotency-Key": "k"})
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, (headers, replayed) = raw_post(sandbox, body, {**auth, "Idempotency-Key": "k"})
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and replayed == created
    assert raw_post(sandbox, body, {"Idempotency-Key": "k2"})[0] == 401
    status, (_, answer) = raw_post(sandbox, body, auth)
    assert status == 400 and answer["error"]["code"] == "idempotency_key_missing"
    zero, lower = {"value": 0, "currency": "EUR"}, {"value": 5, "currency": "eur"}
    for bad in [{**body, "amount": zero}, {**body, "amount": lower}, {"external_id": "x"}]:
        status, (_, answer) = raw_post(sandbox, bad, {**auth, "Idempotency-Key": "k3"})
        assert status == 422 and answer["error"]["code"] == "invalid_request", bad
    assert sandbox.orders()["created"] == 1


def test_same_key_with_another_body_is_rejected_as_reused(sandbox):
    first = order_once(sandbox, gift())
    assert isinstance(first, GiftCardOrder)
    reused = order_once(sandbox, gift(amount_cents=9900))
    assert isinstance(reused, ProviderRejected)
    assert (reused.status, reused.code) == (409, "idempotency_key_reused")
    state = sandbox.orders()
    assert state["created"] == 1 and state["requests"]["create"] == 2  # a 409 is not retried


@pytest.mark.parametrize("api_key", ["wrong-key", ""])
def test_missing_or_wrong_api_key_is_rejected(sandbox, api_key):
    observed = Observed()
    rejected = order_once(sandbox, gift(), api_key=api_key, observe=observed)
    assert isinstance(rejected, ProviderRejected)
    assert (rejected.status, rejected.code) == (401, "unauthorized")
    assert observed.outcomes() == ["4xx"]
    assert sandbox.orders()["created"] == 0


def test_two_503s_then_success_orders_once(sandbox, caplog):
    caplog.set_level(logging.WARNING, logger="streams.adapters.giftcard_client")
    sandbox.faults(fail_next=[{"status": 503, "count": 2}])
    observed = Observed()
    order = order_once(sandbox, gift(), observe=observed)
    assert isinstance(order, GiftCardOrder) and order.status == "completed"
    assert observed.outcomes() == ["5xx", "5xx", "2xx"]
    assert all(seconds >= 0 for _, _, seconds in observed.calls)
    state = sandbox.orders()
    assert state["created"] == 1 and state["requests"]["create"] == 3
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2 and all("503" in message for message in retries)
    assert "attempt 1/5" in retries[0] and "attempt 2/5" in retries[1]


def test_408_429_and_in_progress_409_are_retried(sandbox):
    sandbox.faults(fail_next=[{"status": 408}, {"status": 429},
                              {"status": 409, "code": "idempotency_key_in_progress"}])  # fmt: skip
    observed = Observed()
    order = order_once(sandbox, gift(), observe=observed)
    assert isinstance(order, GiftCardOrder)
    assert observed.outcomes() == ["4xx", "4xx", "4xx", "2xx"]
    assert sandbox.orders()["created"] == 1


def test_a_400_is_rejected_without_retry(sandbox):
    sandbox.faults(fail_next=[{"status": 400, "code": "invalid_amount", "count": 1}])
    rejected = order_once(sandbox, gift())
    assert isinstance(rejected, ProviderRejected)
    assert (rejected.status, rejected.code) == (400, "invalid_amount")
    state = sandbox.orders()
    assert state["requests"]["create"] == 1 and state["created"] == 0


def test_timeouts_retry_with_the_same_key_and_order_once(sandbox):
    delay_s = 0.6
    sandbox.faults(delay_s=delay_s)
    observed = Observed()
    failed = order_once(sandbox, gift(), timeout_s=0.15, max_attempts=3, observe=observed)
    assert isinstance(failed, ProviderUnavailable) and "timeout" in failed.reason
    assert observed.outcomes() == ["timeout"] * 3
    time.sleep(delay_s + 0.5)  # the slow server still finishes every request it received
    state = sandbox.orders()
    assert state["requests"]["create"] == 3
    assert state["created"] == 1
    assert list(state["idempotency_keys"]) == ["idem-1"]


def test_a_lost_answer_is_recovered_by_the_retry(sandbox):
    sandbox.faults(hold_after_create_s=1.5)  # created, then "crashes" before answering
    observed = Observed()
    order = order_once(sandbox, gift(), timeout_s=0.4, observe=observed)
    assert isinstance(order, GiftCardOrder)
    assert observed.outcomes() == ["timeout", "2xx"]
    state = sandbox.orders()
    assert state["created"] == 1
    assert state["idempotency_keys"] == {"idem-1": order.provider_order_id}


def test_a_pending_order_is_polled_until_completed(sandbox):
    sandbox.faults(pending_polls=3)
    observed = Observed()
    order = order_once(sandbox, gift(), observe=observed)
    assert isinstance(order, GiftCardOrder)
    assert order.status == "completed" and order.claim_url and order.code_ref
    assert observed.outcomes("status") == ["2xx"] * 4  # three answers "pending", then completed
    assert sandbox.orders()["requests"] == {"create": 1, "status": 4}


def test_an_order_pending_forever_is_unavailable(sandbox):
    sandbox.faults(pending_polls=10**9)
    started = time.monotonic()
    failed = order_once(sandbox, gift(), pending_timeout_s=0.3, poll_interval_s=0.05)
    assert isinstance(failed, ProviderUnavailable) and failed.reason == "pending"
    assert failed.provider_order_id is not None
    assert 0.3 <= time.monotonic() - started < 5
    state = sandbox.orders()
    assert state["created"] == 1 and state["orders"][0]["status"] == "pending"
    assert state["orders"][0]["reward"] is None


def test_status_of_an_unknown_order_is_rejected(sandbox):
    async def go() -> ProviderRejected:
        async with provider(sandbox) as client:
            with pytest.raises(ProviderRejected) as caught:
                await client.status("ord_missing")
            return caught.value

    rejected = asyncio.run(go())
    assert (rejected.status, rejected.code) == (404, "not_found")


def test_a_provider_that_does_not_answer_is_unavailable():
    observed = Observed()
    client_options: dict[str, Any] = {**FAST, "max_attempts": 3, "observe": observed}

    async def go() -> None:
        async with GiftCardProvider(f"http://127.0.0.1:{free_port()}", "k", **client_options) as c:
            await c.order(gift())

    with pytest.raises(ProviderUnavailable):
        asyncio.run(go())
    assert observed.outcomes() == ["error"] * 3


def test_concurrency_bounds_requests_in_flight(sandbox):
    sandbox.faults(delay_s=0.15)

    async def go() -> list[GiftCardOrder]:
        async with provider(sandbox, concurrency=2) as client:
            return await asyncio.gather(*(client.order(gift(f"k-{i}")) for i in range(6)))

    started = time.monotonic()
    orders = asyncio.run(go())
    assert time.monotonic() - started >= 3 * 0.15  # six requests, two at a time
    assert len({o.provider_order_id for o in orders}) == 6
    assert sandbox.orders()["created"] == 6


def test_the_api_key_never_leaks(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    sandbox.faults(fail_next=[{"status": 503, "count": 1}], pending_polls=10**9)
    failures: list[Exception] = []

    async def go() -> str:
        async with provider(sandbox, timeout_s=1.0, pending_timeout_s=0.1) as client:
            for request in (gift("a"), gift("a", amount_cents=1)):
                try:
                    await client.order(request)
                except (ProviderRejected, ProviderUnavailable) as exc:
                    failures.append(exc)
            return repr(client)

    shown = asyncio.run(go())
    assert [type(f) for f in failures] == [ProviderUnavailable, ProviderRejected]
    assert "***" in shown
    assert caplog.records  # the retry was logged
    texts = [shown, caplog.text, repr(sandbox), sandbox.log_tail(10**6)]
    texts += [str(f) for f in failures] + [repr(f) for f in failures]
    assert all(sandbox.api_key not in text for text in texts)

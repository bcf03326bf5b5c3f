"""A gift-card provider sandbox (HTTP, in memory), shaped like Tremendous, Tango Card and Runa."""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import secrets
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

API_KEY_ENV = "REWARDS_GIFT_CARD_API_KEY"
log = logging.getLogger(__name__)

PositiveMinor = Annotated[int, msgspec.Meta(gt=0, le=2**53 - 1)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=600)]


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who receives the card: the caller's customer reference."""

    customer_ref: Text


class Amount(msgspec.Struct, forbid_unknown_fields=True):
    """A value in minor units and an ISO 4217 currency code."""

    value: PositiveMinor
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


class OrderBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of `POST /v1/orders`."""

    external_id: Text
    recipient: Recipient
    amount: Amount
    message: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class ForcedAnswer(msgspec.Struct, forbid_unknown_fields=True):
    """An error the sandbox gives to the next `count` create calls."""

    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    code: Text | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] = 1


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """Fault settings; each `POST /sandbox/faults` replaces all of them."""

    fail_next: list[ForcedAnswer] = msgspec.field(default_factory=list)
    delay_s: Seconds = 0.0
    hold_after_create_s: Seconds = 0.0
    pending_polls: Annotated[int, msgspec.Meta(ge=0)] = 0


@dataclass
class Book:
    """What the sandbox remembers; `reset` swaps in a new book (stale requests write the old)."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls_left: dict[str, int] = field(default_factory=dict)
    keys: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    create_requests: int = 0
    status_requests: int = 0


@dataclass
class Sandbox:
    """The sandbox's state: the book of orders, the fault settings and the forced-answer queue."""

    api_key: str
    book: Book = field(default_factory=Book)
    faults: Faults = field(default_factory=Faults)
    forced: deque[ForcedAnswer] = field(default_factory=deque)

    def __repr__(self) -> str:
        return f"Sandbox(orders={len(self.book.orders)}, api_key='***')"

    def next_forced(self) -> ForcedAnswer | None:
        """Take one answer from the forced-answer queue."""
        if not self.forced:
            return None
        head = self.forced[0]
        head.count -= 1
        if head.count == 0:
            self.forced.popleft()
        return ForcedAnswer(head.status, head.code, 1)


SANDBOX = web.AppKey("sandbox", Sandbox)


def error(status: int, code: str, message: str) -> web.Response:
    """An error answer in the provider's format."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def now_rfc3339() -> str:
    """The current UTC time, RFC 3339 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def complete(order: dict[str, Any], host: str) -> None:
    """Mark an order completed and attach its reward (claim link and vault reference)."""
    order["status"] = "completed"
    order["reward"] = {
        "claim_url": f"http://{host}/claim/{secrets.token_urlsafe(16)}",
        "code_ref": f"vault:giftcards/{order['id']}",
    }


def authorized(request: web.Request) -> bool:
    """True when the request carries `Authorization: Bearer <api key>`."""
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {request.app[SANDBOX].api_key}"
    return hmac.compare_digest(given.encode(), expected.encode())


def unauthorized() -> web.Response:
    """401: a missing or wrong API key (never echoed)."""
    return error(401, "unauthorized", "missing or invalid API key")


def store_order(sandbox: Sandbox, book: Book, body: OrderBody, host: str) -> dict[str, Any]:
    """Create an order from a validated body; pending when `pending_polls` is set."""
    order_id = f"ord_{secrets.token_hex(12)}"
    order: dict[str, Any] = {
        "id": order_id,
        "status": "pending",
        "external_id": body.external_id,
        "amount": msgspec.to_builtins(body.amount),
        "recipient": msgspec.to_builtins(body.recipient),
        "created_at": now_rfc3339(),
        "reward": None,
    }
    if sandbox.faults.pending_polls > 0:
        book.polls_left[order_id] = sandbox.faults.pending_polls
    else:
        complete(order, host)
    book.orders[order_id] = order
    return order


def replay(book: Book, key: str, fingerprint: dict[str, Any]) -> web.Response | None:
    """The stored answer for a known idempotency key (409 if the body differs), else None."""
    if key not in book.keys:
        return None
    seen, order_id = book.keys[key]
    if seen != fingerprint:
        return error(409, "idempotency_key_reused", "key already used with another body")
    stored = {"order": book.orders[order_id]}
    return web.json_response(stored, headers={"Idempotent-Replayed": "true"})


async def create_order(request: web.Request) -> web.Response:
    """`POST /v1/orders`: create an order once per idempotency key."""
    sandbox = request.app[SANDBOX]
    book = sandbox.book
    book.create_requests += 1
    raw = await request.read()  # before any delay: the client may hang up while we sleep
    forced = sandbox.next_forced()
    if forced is not None:
        return error(forced.status, forced.code or "sandbox_forced", "forced by the sandbox")
    if sandbox.faults.delay_s:
        await asyncio.sleep(sandbox.faults.delay_s)
    if not authorized(request):
        return unauthorized()
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return error(400, "idempotency_key_missing", "the Idempotency-Key header is required")
    try:
        body = msgspec.json.decode(raw, type=OrderBody)
    except msgspec.DecodeError as exc:
        return error(422, "invalid_request", str(exc))
    fingerprint = msgspec.to_builtins(body)
    answer = replay(book, key, fingerprint)
    if answer is None:
        order = store_order(sandbox, book, body, request.host)
        book.keys[key] = (fingerprint, order["id"])
        if sandbox.faults.hold_after_create_s:
            await asyncio.sleep(sandbox.faults.hold_after_create_s)
        answer = web.json_response({"order": order}, status=201)
    return answer


async def get_order(request: web.Request) -> web.Response:
    """`GET /v1/orders/{id}`: one order; a pending order completes after its configured polls."""
    sandbox = request.app[SANDBOX]
    book = sandbox.book
    book.status_requests += 1
    if not authorized(request):
        return unauthorized()
    order_id = request.match_info["order_id"]
    order = book.orders.get(order_id)
    if order is None:
        return error(404, "not_found", f"no order {order_id}")
    answer = web.json_response({"order": order})  # serialised now: this poll still sees pending
    if order_id in book.polls_left:
        book.polls_left[order_id] -= 1
        if book.polls_left[order_id] <= 0:
            del book.polls_left[order_id]
            complete(order, request.host)
    return answer


async def healthz(_: web.Request) -> web.Response:
    """`GET /healthz`."""
    return web.json_response({"ok": True})


async def set_faults(request: web.Request) -> web.Response:
    """`POST /sandbox/faults`: replace the fault settings; answer the settings in force."""
    sandbox = request.app[SANDBOX]
    try:
        faults = msgspec.json.decode(await request.read() or b"{}", type=Faults)
    except msgspec.DecodeError as exc:
        return error(422, "invalid_request", str(exc))
    sandbox.faults = faults
    sandbox.forced = deque(ForcedAnswer(f.status, f.code, f.count) for f in faults.fail_next)
    return web.json_response(msgspec.to_builtins(faults))


async def reset(request: web.Request) -> web.Response:
    """`POST /sandbox/reset`: forget orders, idempotency keys, counters and faults."""
    sandbox = request.app[SANDBOX]
    sandbox.book, sandbox.faults, sandbox.forced = Book(), Faults(), deque()
    return web.json_response({"ok": True})


async def list_orders(request: web.Request) -> web.Response:
    """`GET /sandbox/orders`: every order, the request counters and the idempotency keys."""
    book = request.app[SANDBOX].book
    return web.json_response(
        {
            "orders": list(book.orders.values()),
            "created": len(book.orders),
            "requests": {"create": book.create_requests, "status": book.status_requests},
            "idempotency_keys": {key: order_id for key, (_, order_id) in book.keys.items()},
        }
    )


def build_app(api_key: str) -> web.Application:
    """The sandbox application accepting `api_key` as its one bearer token."""
    if not api_key:
        raise ValueError("the sandbox needs a non-empty API key")
    app = web.Application()
    app[SANDBOX] = Sandbox(api_key)
    app.router.add_post("/v1/orders", create_order)
    app.router.add_get("/v1/orders/{order_id}", get_order)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/sandbox/faults", set_faults)
    app.router.add_post("/sandbox/reset", reset)
    app.router.add_get("/sandbox/orders", list_orders)
    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m streams.cli.giftcard_sandbox --host 127.0.0.1 --port PORT`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)  # REWARDS_GIFT_CARD_PROVIDER_URL
    args = parser.parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        sys.exit(f"{API_KEY_ENV} is not set")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("gift-card sandbox on http://%s:%d", args.host, args.port)
    web.run_app(
        build_app(api_key),
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=2.0,
        handler_cancellation=False,  # a client that hangs up does not undo its order
    )


if __name__ == "__main__":
    main()

"""Async client for the gift-card provider API: idempotent orders, bounded jittered retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

Observe = Callable[[str, str, float], None]
"""`observe(operation, outcome, seconds)`: one call per HTTP attempt, for metrics."""

RETRYABLE_STATUSES = frozenset({408, 429})
IN_PROGRESS_CODES = frozenset({"idempotency_key_in_progress", "idempotency_key_in_use"})


@dataclass(frozen=True, slots=True)
class GiftCardRequest:
    """One gift card to order; `idempotency_key` makes retries and replays safe."""

    idempotency_key: str
    external_id: str
    customer_ref: str
    amount_cents: int
    currency: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class GiftCardOrder:
    """The provider's order: completed (with claim link and vault reference) or pending."""

    provider_order_id: str
    status: str  # "completed" | "pending"
    claim_url: str | None
    code_ref: str | None


class ProviderRejected(Exception):
    """The provider refused the request for good (a 4xx): retrying the same request won't help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"gift-card provider rejected the request: {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ProviderUnavailable(Exception):
    """Transient failures outlasted the bounded retries, or the order stayed pending too long."""

    def __init__(
        self, reason: str, *, status: int | None = None, provider_order_id: str | None = None
    ) -> None:
        super().__init__(f"gift-card provider unavailable: {reason}")
        self.reason = reason
        self.status = status
        self.provider_order_id = provider_order_id


class _Reward(msgspec.Struct):
    """`order.reward` in a provider answer."""

    claim_url: str | None = None
    code_ref: str | None = None


class _Order(msgspec.Struct):
    """`order` in a provider answer (only the fields the client needs)."""

    id: str
    status: Literal["completed", "pending"]
    reward: _Reward | None = None


class _OrderEnvelope(msgspec.Struct):
    """`{"order": ...}`."""

    order: _Order


class _ErrorDetail(msgspec.Struct):
    """`error` in a provider's error answer."""

    code: str = "unknown"
    message: str = ""


class _ErrorEnvelope(msgspec.Struct):
    """`{"error": ...}`."""

    error: _ErrorDetail


def _outcome(status: int) -> str:
    """The `observe` outcome of an HTTP status."""
    return {2: "2xx", 4: "4xx", 5: "5xx"}.get(status // 100, "error")


def _parse_order(body: bytes) -> GiftCardOrder:
    """A `{"order": ...}` body as a GiftCardOrder; a malformed body is a transient failure."""
    try:
        order = msgspec.json.decode(body, type=_OrderEnvelope).order
    except msgspec.DecodeError as exc:
        raise ProviderUnavailable(f"malformed order in response: {exc}") from exc
    reward = order.reward or _Reward()
    return GiftCardOrder(order.id, order.status, reward.claim_url, reward.code_ref)


def _failure(status: int, body: bytes) -> ProviderRejected | ProviderUnavailable:
    """The exception for a non-2xx answer: transient (retried) or a permanent rejection."""
    try:
        detail = msgspec.json.decode(body, type=_ErrorEnvelope).error
    except msgspec.DecodeError:
        detail = _ErrorDetail(f"http_{status}", body[:200].decode(errors="replace"))
    transient = (
        status >= 500
        or status in RETRYABLE_STATUSES
        or (status == 409 and detail.code in IN_PROGRESS_CODES)
    )
    if transient:
        return ProviderUnavailable(f"HTTP {status} {detail.code}", status=status)
    return ProviderRejected(status, detail.code, detail.message)


class GiftCardProvider:
    """Orders gift cards over HTTP; one aiohttp session, opened lazily, closed by `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        pending_timeout_s: float = 30.0,
        poll_interval_s: float = 0.2,
        concurrency: int = 16,
        observe: Observe | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._authorization = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._pending_timeout_s = pending_timeout_s
        self._poll_interval_s = poll_interval_s
        self._concurrency = concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        self._observe = observe
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"GiftCardProvider(base_url={self._base_url!r}, api_key='***')"

    async def __aenter__(self) -> GiftCardProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def order(self, request: GiftCardRequest) -> GiftCardOrder:
        """Order a gift card, retrying with the same idempotency key; wait until completed."""
        body: dict[str, Any] = {
            "external_id": request.external_id,
            "recipient": {"customer_ref": request.customer_ref},
            "amount": {"value": request.amount_cents, "currency": request.currency},
            "message": request.message,
        }
        headers = {"Idempotency-Key": request.idempotency_key}
        url = f"{self._base_url}/v1/orders"
        created = await self._retrying("create", "POST", url, json=body, headers=headers)
        return await self._until_completed(created)

    async def status(self, provider_order_id: str) -> GiftCardOrder:
        """The provider's current view of an order (transient failures are retried)."""
        url = f"{self._base_url}/v1/orders/{quote(provider_order_id, safe='')}"
        return await self._retrying("status", "GET", url)

    async def _until_completed(self, order: GiftCardOrder) -> GiftCardOrder:
        """Poll a pending order every `poll_interval_s` until completed or `pending_timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._pending_timeout_s
        while order.status != "completed":
            left = deadline - loop.time()
            if left <= 0:
                log.warning(
                    "gift-card order %s still pending after %.1fs",
                    order.provider_order_id, self._pending_timeout_s,
                )  # fmt: skip
                raise ProviderUnavailable("pending", provider_order_id=order.provider_order_id)
            await asyncio.sleep(min(self._poll_interval_s, left))
            order = await self.status(order.provider_order_id)
        return order

    async def _retrying(
        self, operation: str, method: str, url: str, **kwargs: Any
    ) -> GiftCardOrder:
        """One logical call: up to `max_attempts` HTTP attempts with full-jitter backoff."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._backoff,
            retry=retry_if_exception_type(ProviderUnavailable),
            before_sleep=lambda state: self._log_retry(operation, state),
            reraise=True,
        )
        return await retrying(self._attempt, operation, method, url, **kwargs)

    def _log_retry(self, operation: str, state: RetryCallState) -> None:
        """Warn about a failed attempt that will be retried."""
        failure = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "gift-card %s attempt %d/%d failed (%s); retrying in %.2fs",
            operation, state.attempt_number, self._max_attempts, failure, delay,
        )  # fmt: skip

    async def _attempt(self, operation: str, method: str, url: str, **kwargs: Any) -> GiftCardOrder:
        """One HTTP attempt, observed; raises ProviderUnavailable (retried) or ProviderRejected."""
        session = self._session_in_loop()
        async with self._semaphore:
            started, outcome = time.perf_counter(), "error"
            try:
                async with session.request(
                    method, url, timeout=self._timeout, allow_redirects=False, **kwargs
                ) as response:
                    status, body = response.status, await response.read()
                outcome = _outcome(status)
                if outcome != "2xx":
                    raise _failure(status, body)
                try:
                    return _parse_order(body)
                except ProviderUnavailable:
                    outcome = "error"
                    raise
            except TimeoutError as exc:
                outcome = "timeout"
                raise ProviderUnavailable(f"timeout after {self._timeout.total}s") from exc
            except aiohttp.ClientError as exc:
                raise ProviderUnavailable(f"{type(exc).__name__}: {exc}") from exc
            finally:
                if self._observe is not None:
                    self._observe(operation, outcome, time.perf_counter() - started)

    def _session_in_loop(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use inside the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self._authorization, "Accept": "application/json"},
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                raise_for_status=False,
            )
        return self._session

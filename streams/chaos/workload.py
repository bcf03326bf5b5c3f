"""The chaos soak's seeded workload: a shop whose outcome the oracle can compute exactly."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

MIX: Final = {
    "purchase": 30,
    "backdated": 16,
    "redeem": 6,
    "refund": 9,
    "signup": 5,
    "complaint": 4,
}
"""Relative weights of what a step publishes (the referees' qualifying purchases come on top)."""
RETRY_RATIO: Final = 0.01
BAD_RATIO: Final = 0.005
BAD_KINDS: Final = ("key_mismatch", "unknown_currency", "no_points_rate")
CONVERT_SHARE: Final = 0.8
"""Share of referees who make their qualifying purchase (the others stay attributed)."""
SEVERITIES: Final = (("low", 10), ("medium", 55), ("high", 25), ("critical", 10))
CATEGORIES: Final = ("late_delivery", "damaged_item", "wrong_item", "billing")
AGENTS: Final = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "Mozilla/5.0 (iPhone) Mobile")
MAX_REFERRALS: Final = 2


@dataclass(frozen=True, slots=True)
class Record:
    """One record to publish: input topic (base name), key, value and what it is."""

    topic: str
    key: bytes
    value: bytes
    kind: str


@dataclass
class _Order:
    customer: str
    order_id: str
    amount: int
    refunded: int = 0
    """A first refund is partial or full; a second one refunds the rest (each reverses points)."""


@dataclass
class _Shopper:
    customer_id: str
    number: int
    available: int = 0
    """Roughly what the customer can redeem (the oracle is exact; this only aims redemptions)."""
    referrals: int = 0
    in_referral: bool = False
    complained: bool = False


@dataclass
class _State:
    shoppers: list[_Shopper] = field(default_factory=list)
    orders: deque[_Order] = field(default_factory=lambda: deque(maxlen=4096))
    recent: deque[Record] = field(default_factory=lambda: deque(maxlen=200))
    due: deque[tuple[int, _Shopper]] = field(default_factory=deque)
    """Referees' qualifying purchases: (step index from which it is due, the referee)."""


class Workload:
    """`records(n)`: n records, the same for the same seed; event times from `start` at `rate`."""

    def __init__(self, seed: int, rate: float, start: datetime | None = None) -> None:
        self._rng = random.Random(seed)
        self._seed = seed
        self._rate = rate
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._now = self._start
        self._state = _State()
        self._numbers = 0
        self._ids = 0
        self._step = 0

    def records(self, n: int) -> list[Record]:
        """The workload, in publishing order."""
        makers = [getattr(self, f"_{kind}") for kind in MIX]
        weights = list(MIX.values())
        out: list[Record] = []
        for step in range(n):
            self._step = step
            self._now = self._start + timedelta(seconds=step / self._rate)
            state, roll = self._state, self._rng.random()
            if state.due and state.due[0][0] <= step:
                record = self._qualifying(state.due.popleft()[1])
            elif roll < RETRY_RATIO and state.recent:
                record = self._rng.choice(state.recent)
                record = Record(record.topic, record.key, record.value, "retry")
            elif roll < RETRY_RATIO + BAD_RATIO:
                record = self._bad(self._rng.choice(BAD_KINDS))
            else:
                record = self._rng.choices(makers, weights)[0]()
            if record.kind != "retry":
                state.recent.append(record)
            out.append(record)
        return out

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._seed}-{self._ids:07d}"

    def _customer(self) -> _Shopper:
        self._numbers += 1
        return _Shopper(f"cust-{self._numbers:06d}", self._numbers)

    def _context(self, shopper: _Shopper) -> dict[str, Any]:
        """The customer's own signals: nobody shares an e-mail, device, card, address or IP."""
        n = shopper.number
        return {
            "email": f"shopper{n}.s{self._seed}@outlook.com",
            "ip": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
            "user_agent": AGENTS[n % len(AGENTS)],
            "device_id": f"dev-{self._seed}-{n:07d}",
            "payment_fingerprint": f"pf_{self._seed}_{n:07d}",
            "shipping_address": {"line1": f"{n} Chaos Street", "city": "Berlin", "country": "DE"},
        }

    def _at(self, when: datetime | None = None) -> str:
        return (when or self._now).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _emit(self, topic: str, key: str, body: dict[str, Any], kind: str) -> Record:
        return Record(topic, key.encode(), orjson.dumps(body), kind)

    def _shopper(self, *, referee: bool = True) -> _Shopper:
        """A customer to buy: a new one one time in eight (and always while there are few);
        `referee=False`: never a referee (their purchases must not predate their sign-up)."""
        shoppers = self._state.shoppers
        if len(shoppers) < 20 or self._rng.random() < 0.125:
            shoppers.append(self._customer())
        chosen = self._rng.choice(shoppers)
        return chosen if referee or not chosen.in_referral else self._customer()

    def _buy(self, shopper: _Shopper, amount: int, kind: str, **extra: Any) -> Record:
        body: dict[str, Any] = {
            "event_id": self._id("evt-p"),
            "occurred_at": self._at(extra.pop("when", None)),
            "customer_id": shopper.customer_id,
            "type": "purchase",
            "order_id": self._id("ord"),
            "amount_cents": amount,
            "currency": extra.pop("currency", "EUR"),
            **extra,
        }
        if self._rng.random() < 0.5:
            body["context"] = self._context(shopper)
        if kind in {"purchase", "backdated", "redeem"}:
            self._state.orders.append(_Order(shopper.customer_id, body["order_id"], amount))
        return self._emit("purchases", shopper.customer_id, body, kind)

    def _purchase(self) -> Record:
        """A purchase made now: its points stay pending (held for 14 days) all through the run."""
        return self._buy(self._shopper(), self._rng.randrange(1000, 20_000), "purchase")

    def _backdated(self) -> Record:
        """A purchase made 15-60 days ago: its hold is over, so its points are available at once."""
        shopper, amount = self._shopper(referee=False), self._rng.randrange(1000, 20_000)
        shopper.available += amount // 100
        days = self._rng.uniform(15, 60)
        return self._buy(shopper, amount, "backdated", when=self._now - timedelta(days=days))

    def _redeem(self) -> Record:
        """A purchase paying partly with points, by a customer who should have some available."""
        rich = [s for s in self._state.shoppers[-500:] if s.available >= 20]
        if not rich:
            return self._purchase()
        shopper = self._rng.choice(rich)
        points = self._rng.randrange(10, min(200, shopper.available) + 1)
        shopper.available -= points
        amount = self._rng.randrange(1000, 20_000)
        return self._buy(shopper, amount, "redeem", points_redeemed=points)

    def _refund(self) -> Record:
        """A partial refund (20-60% of an order of EUR 10 or more: at least a point back) or a
        full one; an order refunded in part is later refunded in full (the rest)."""
        orders = self._state.orders
        if not orders:
            return self._purchase()
        order = orders[self._rng.randrange(len(orders))]
        full = order.refunded > 0 or self._rng.random() < 0.5
        left = order.amount - order.refunded
        amount = left if full else int(order.amount * self._rng.uniform(0.2, 0.6))
        order.refunded += amount
        if full:
            orders.remove(order)
        body = {
            "event_id": self._id("evt-r"),
            "occurred_at": self._at(),
            "customer_id": order.customer,
            "type": "refund",
            "order_id": order.order_id,
            "amount_cents": amount,
            "currency": "EUR",
        }
        return self._emit("purchases", order.customer, body, "refund_full" if full else "refund")

    def _signup(self) -> Record:
        """A new customer signs up with an existing shopper's code; most buy soon after."""
        referrers = [
            s
            for s in self._state.shoppers
            if not s.in_referral and not s.complained and s.referrals < MAX_REFERRALS
        ]
        if not referrers:
            return self._purchase()
        referrer, referee = self._rng.choice(referrers), self._customer()
        referrer.referrals += 1
        referee.in_referral = True
        if self._rng.random() < CONVERT_SHARE:
            self._state.due.append((self._step + self._rng.randrange(20, 400), referee))
        body = {
            "event_id": self._id("evt-s"),
            "occurred_at": self._at(),
            "type": "signed_up",
            "referrer_id": referrer.customer_id,
            "referral_code": f"CODE-{referrer.number}",
            "referral_id": self._id("rfl"),
            "referee_id": referee.customer_id,
            "context": self._context(referee),
        }
        return self._emit("referrals", referrer.customer_id, body, "signup")

    def _qualifying(self, referee: _Shopper) -> Record:
        """The referee's first purchase, over the EUR 20 minimum: it converts the referral."""
        record = self._buy(referee, self._rng.randrange(2500, 15_000), "qualifying")
        self._state.shoppers.append(referee)  # shops on from now on (never refunds this order)
        return record

    def _complaint(self) -> Record:
        """A complaint by a customer who never complained and takes no part in referrals."""
        candidates = [s for s in self._state.shoppers[-200:] if not s.complained]
        candidates = [s for s in candidates if not s.in_referral and not s.referrals]
        use_new = not candidates or self._rng.random() < 0.5
        shopper = self._customer() if use_new else self._rng.choice(candidates)
        shopper.complained = True
        names, weights = [s for s, _ in SEVERITIES], [w for _, w in SEVERITIES]
        severity = self._rng.choices(names, weights)[0]
        body = {
            "event_id": self._id("evt-c"),
            "occurred_at": self._at(),
            "customer_id": shopper.customer_id,
            "complaint_id": self._id("cmp"),
            "severity": severity,
            "category": self._rng.choice(CATEGORIES),
            "channel": "email",
        }
        return self._emit("complaints", shopper.customer_id, body, "complaint")

    def _bad(self, kind: str) -> Record:
        """A purchase the worker must dead-letter (each with its own event id)."""
        shopper, amount = self._shopper(referee=False), self._rng.randrange(500, 5000)
        if kind == "no_points_rate":
            return self._buy(shopper, amount, kind, currency="JPY")
        if kind == "unknown_currency":
            return self._buy(shopper, amount, kind, currency="XXX")
        record = self._buy(shopper, amount, kind)
        return Record(record.topic, f"{shopper.customer_id}-x".encode(), record.value, kind)

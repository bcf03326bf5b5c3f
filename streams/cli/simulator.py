"""A seeded, deterministic simulator of a small shop's input events, for demos and tests."""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import orjson

T = TypeVar("T")
Payload = dict[str, Any]

GOOD_MIX: Final = {
    "purchase": 50,
    "refund": 4,
    "referral_invited": 10,
    "referral_signed_up": 6,
    "self_referral": 1,
    "complaint": 8,
    "survey": 12,
}
"""Relative weights of the well-formed event kinds (each made by the method `_<kind>`)."""
BAD_KINDS: Final = ("bad_json", "bad_currency", "bad_type", "missing_field", "oversized")
DUPLICATE_RATIO: Final = 0.01
"""Share of events that re-send an earlier event byte for byte, as a producer retry would."""
OVERSIZED_BYTES: Final = 100_000
MEMORY: Final = 4096  # recent orders, open complaints and pending invitations to follow up

COUNTRIES: Final = ("DE", "FR", "NL", "ES", "IT", "IE", "GB", "US")
COUNTRY_WEIGHTS: Final = (30, 20, 12, 10, 10, 5, 8, 5)
"""Where customers live; those in GB pay in GBP, in the US in USD, everyone else in EUR."""
CITIES: Final = ("Berlin", "Lyon", "Utrecht", "Bilbao", "Turin", "Cork", "Leeds", "Austin")
FIRST_NAMES: Final = ("anna", "ben", "chloe", "david", "elif", "finn", "greta", "hugo", "ines")
LAST_NAMES: Final = ("meyer", "dubois", "jansen", "garcia", "rossi", "murphy", "smith", "novak")
DOMAINS: Final = ("gmail.com", "web.de", "outlook.com", "orange.fr", "proton.me", "icloud.com")
USER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
SEVERITIES: Final = ("low", "medium", "high", "critical")
CATEGORIES: Final = ("late_delivery", "damaged_item", "wrong_item", "missing_item", "billing")
NPS_WEIGHTS: Final = (2, 1, 1, 2, 2, 4, 6, 12, 18, 24, 28)
"""Weights of scores 0..10 in an ordinary NPS answer: mostly promoters, a tail of detractors."""
FOLLOW_UP_PENALTY: Final = {"low": 1, "medium": 3, "high": 5, "critical": 7}
"""Points a complaint's follow-up score loses against an ordinary answer, by the severity."""
COMMENTS: Final = ("Fast delivery, thanks!", "Support took too long.", "Item arrived damaged.")
REQUIRED: Final = {
    "purchases": ("event_id", "occurred_at", "type", "order_id", "amount_cents", "currency"),
    "complaints": ("event_id", "occurred_at", "complaint_id", "severity", "category"),
    "referrals": ("event_id", "occurred_at", "type"),
    "survey-responses": ("event_id", "occurred_at", "survey_id", "score"),
}
"""Required fields a `missing_field` event may lack (never the key field, so the key still fits)."""
WRONG_TYPES: Final = {"purchases": ("amount_cents", "45.99"), "survey-responses": ("score", "9")}
"""Typical producer type slips per topic; elsewhere `occurred_at` comes as epoch milliseconds."""
SHAREABLE: Final = ("email", "device_id", "payment_fingerprint", "shipping_address")
"""Signals a self-referrer's second account shares with the first (besides, often, the ip)."""


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One record to publish: input topic (base name), Kafka key, value and the simulated kind."""

    topic: str
    key: bytes | None
    value: bytes
    kind: str


@dataclass(frozen=True, slots=True)
class _Customer:
    customer_id: str
    currency: str
    referral_code: str
    signals: Payload
    """The v1 `context` object: email, ip, user_agent, device_id, payment_fingerprint, address."""


def email_alias(email: str, rng: random.Random) -> str:
    """The same mailbox spelt differently: dots moved or a +tag added (webmail ignores both)."""
    local, domain = email.split("@", 1)
    bare = local.replace(".", "")
    if rng.random() < 0.5:
        return f"{bare}+{rng.choice(('promo', 'ref', 'shop'))}@{domain}"
    cut = rng.randint(1, len(bare) - 1)
    alias = f"{bare[:cut]}.{bare[cut:]}@{domain}"
    return alias if alias != email else f"{bare}@{domain}"


class ShopSimulator:
    """A reproducible stream of shop events; each call to `events` continues the same stream."""

    def __init__(
        self,
        *,
        seed: int = 7,
        customers: int = 500,
        self_referrers: int = 8,
        bad_event_ratio: float = 0.01,
        start: datetime | None = None,
    ) -> None:
        """`seed` fixes every id and value; `start` (default: now) counts as UTC when naive."""
        if customers < 1 or not 0 <= self_referrers <= customers:
            raise ValueError("need customers >= 1 and 0 <= self_referrers <= customers")
        if not 0.0 <= bad_event_ratio <= 1.0 - DUPLICATE_RATIO:
            raise ValueError(f"bad_event_ratio must be within 0..{1.0 - DUPLICATE_RATIO}")
        self._rng = random.Random(seed)
        moment = start or datetime.now(UTC)
        self._clock = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        self._bad_event_ratio = bad_event_ratio
        self._customers: list[_Customer] = []
        for number in range(customers):
            self._customers.append(self._new_customer(cheater=number < self_referrers))
        self._cheaters = self._customers[:self_referrers]
        self._orders: deque[tuple[_Customer, str, int]] = deque(maxlen=MEMORY)  # id, amount
        self._complaints: deque[tuple[_Customer, str, str]] = deque(maxlen=MEMORY)  # id, severity
        self._invites: deque[tuple[_Customer, str, str]] = deque(maxlen=MEMORY)  # id, email
        self._recent: deque[SimEvent] = deque(maxlen=256)
        kinds = [kind for kind in GOOD_MIX if kind != "self_referral" or self._cheaters]
        self._makers: list[Callable[[], SimEvent]] = [getattr(self, f"_{k}") for k in kinds]
        self._weights = [GOOD_MIX[kind] for kind in kinds]

    def events(self, n: int) -> Iterator[SimEvent]:
        """The next `n` events, their event times a few seconds apart."""
        rng = self._rng
        for _ in range(n):
            self._clock += timedelta(seconds=rng.uniform(0.2, 5.0))
            roll = rng.random()
            if roll < self._bad_event_ratio:
                yield self._bad(rng.choice(BAD_KINDS))
            elif roll < self._bad_event_ratio + DUPLICATE_RATIO and self._recent:
                yield replace(rng.choice(self._recent), kind="duplicate")
            else:
                self._recent.append(rng.choices(self._makers, self._weights)[0]())
                yield self._recent[-1]

    def _id(self, prefix: str = "") -> str:
        return f"{prefix}{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"

    def _base(self, **fields: Any) -> Payload:
        occurred_at = self._clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"event_id": self._id(), "occurred_at": occurred_at, **fields}

    def _emit(self, topic: str, key: str, body: Payload, kind: str) -> SimEvent:
        return SimEvent(topic, key.encode(), orjson.dumps(body), kind)

    def _pop(self, items: deque[T]) -> T:
        index = self._rng.randrange(len(items))
        item = items[index]
        del items[index]
        return item

    def _new_email(self, domain: str | None = None) -> str:
        rng = self._rng
        name = f"{rng.choice(FIRST_NAMES)}{rng.choice('._')}{rng.choice(LAST_NAMES)}"
        return f"{name}{rng.randint(10, 9999)}@{domain or rng.choice(DOMAINS)}"

    def _new_customer(self, *, email: str | None = None, cheater: bool = False) -> _Customer:
        rng, number = self._rng, len(self._customers)
        i = rng.choices(range(len(COUNTRIES)), COUNTRY_WEIGHTS)[0]
        street = f"{rng.randint(1, 199)} {rng.choice(('Market', 'Station', 'Park'))} Street"
        address = {"line1": street, "city": CITIES[i], "country": COUNTRIES[i]}
        signals = {
            "email": email or self._new_email("gmail.com" if cheater else None),
            "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
            "user_agent": rng.choice(USER_AGENTS),
            "device_id": f"dev-{rng.getrandbits(64):016x}",
            "payment_fingerprint": f"pf_{rng.getrandbits(96):024x}",
            "shipping_address": address | {"postal_code": f"{rng.randint(1000, 99999):05d}"},
        }
        code = f"R{number:05d}{rng.getrandbits(16):04X}"
        currency = {"GB": "GBP", "US": "USD"}.get(COUNTRIES[i], "EUR")
        return _Customer(f"cust-{number:05d}", currency, code, signals)

    def _purchase_body(self, customer: _Customer, order_id: str, amount: int) -> Payload:
        body = self._base(customer_id=customer.customer_id, type="purchase", order_id=order_id)
        body |= {"amount_cents": amount, "currency": customer.currency}
        if self._rng.random() < 0.08:
            body["points_redeemed"] = self._rng.choice((100, 250, 500, 1000))
        if self._rng.random() < 0.8:
            body["context"] = customer.signals
        return body

    def _purchase(self) -> SimEvent:
        customer = self._rng.choice(self._customers)
        amount = max(99, int(round(self._rng.lognormvariate(8.2, 0.7), -2)) - 1)  # 35.99-ish
        order_id = self._id("ord-")
        self._orders.append((customer, order_id, amount))
        body = self._purchase_body(customer, order_id, amount)
        return self._emit("purchases", customer.customer_id, body, "purchase")

    def _refund(self) -> SimEvent:
        if not self._orders:
            return self._purchase()
        customer, order_id, paid = self._pop(self._orders)
        amount = paid if self._rng.random() < 0.6 else self._rng.randint(1, paid - 1)
        body = self._base(customer_id=customer.customer_id, type="refund", order_id=order_id)
        body |= {"amount_cents": amount, "currency": customer.currency}
        return self._emit("purchases", customer.customer_id, body, "refund")

    def _complaint_body(self, customer: _Customer, order_id: str | None) -> Payload:
        rng = self._rng
        body = self._base(customer_id=customer.customer_id, complaint_id=self._id("cmp-"))
        body["severity"] = rng.choices(SEVERITIES, (45, 35, 15, 5))[0]
        body["category"] = rng.choice(CATEGORIES)
        body["channel"] = rng.choice(("email", "chat", "phone", "web"))
        if order_id is not None:
            body["order_id"] = order_id
        return body

    def _complaint(self) -> SimEvent:
        rng = self._rng
        if self._orders and rng.random() < 0.8:  # about an order
            customer, order_id, _ = rng.choice(self._orders)
        else:
            customer, order_id = rng.choice(self._customers), None
        body = self._complaint_body(customer, order_id)
        self._complaints.append((customer, body["complaint_id"], body["severity"]))
        return self._emit("complaints", customer.customer_id, body, "complaint")

    def _survey_body(self, customer: _Customer, complaint: str | None, penalty: int) -> Payload:
        rng = self._rng
        score = max(0, rng.choices(range(11), NPS_WEIGHTS)[0] - penalty)
        survey_id = "complaint-follow-up" if complaint else "nps-quarterly"
        body = self._base(customer_id=customer.customer_id, survey_id=survey_id, score=score)
        body["channel"] = rng.choice(("email", "in_app"))
        if complaint is not None:
            body["complaint_id"] = complaint
        if rng.random() < 0.6:
            body["ces"] = max(1, min(7, round(1 + score * 0.6 + rng.uniform(-1.5, 1.5))))
        if rng.random() < 0.15:
            body["comment"] = rng.choice(COMMENTS)
        return body

    def _survey(self) -> SimEvent:
        if self._complaints and self._rng.random() < 0.4:  # a follow-up of an earlier complaint
            customer, complaint_id, severity = self._pop(self._complaints)
            body = self._survey_body(customer, complaint_id, FOLLOW_UP_PENALTY[severity])
        else:
            customer = self._rng.choice(self._customers)
            body = self._survey_body(customer, None, 0)
        return self._emit("survey-responses", customer.customer_id, body, "survey")

    def _referral_body(self, kind: str, referrer: _Customer, referral_id: str) -> Payload:
        body = self._base(type=kind, referrer_id=referrer.customer_id)
        return body | {"referral_code": referrer.referral_code, "referral_id": referral_id}

    def _referral_invited(self) -> SimEvent:
        referrer = self._rng.choice(self._customers)
        invite = (referrer, self._id("rfl-"), self._new_email())
        self._invites.append(invite)
        body = self._referral_body("invited", referrer, invite[1]) | {"invitee_email": invite[2]}
        return self._emit("referrals", referrer.customer_id, body, "referral_invited")

    def _join(self, referrer: _Customer, ref_id: str, referee: _Customer, kind: str) -> SimEvent:
        self._customers.append(referee)  # the new customer shops from now on
        body = self._referral_body("signed_up", referrer, ref_id)
        body |= {"referee_id": referee.customer_id, "context": referee.signals}
        return self._emit("referrals", referrer.customer_id, body, kind)

    def _referral_signed_up(self) -> SimEvent:
        if not self._invites:
            return self._referral_invited()
        referrer, referral_id, email = self._pop(self._invites)
        referee = self._new_customer(email=email)
        return self._join(referrer, referral_id, referee, "referral_signed_up")

    def _self_referral(self) -> SimEvent:
        """A sign-up whose referee shares 1-3 of the referrer's signals (and maybe the ip)."""
        rng = self._rng
        cheater, fake = rng.choice(self._cheaters), self._new_customer()
        own, signals = cheater.signals, dict(fake.signals)
        shared = rng.sample(SHAREABLE, rng.randint(1, 3)) + (["ip"] if rng.random() < 0.5 else [])
        signals |= {signal: own[signal] for signal in shared}
        if "email" in shared:
            signals["email"] = email_alias(own["email"], rng)
        referee = replace(fake, signals=signals)
        return self._join(cheater, self._id("rfl-"), referee, "self_referral")

    def _sample(self, topic: str) -> tuple[str, Payload]:
        """A valid body for `topic` and its key, with no effect on the simulated shop."""
        customer = self._rng.choice(self._customers)
        if topic == "purchases":
            body = self._purchase_body(customer, self._id("ord-"), self._rng.randint(99, 9999))
        elif topic == "complaints":
            body = self._complaint_body(customer, None)
        elif topic == "survey-responses":
            body = self._survey_body(customer, None, 0)
        else:
            body = self._referral_body("invited", customer, self._id("rfl-"))
        return customer.customer_id, body

    def _bad(self, kind: str) -> SimEvent:
        rng = self._rng
        topics = ("purchases",) if kind in {"bad_currency", "oversized"} else tuple(REQUIRED)
        topic = rng.choice(topics)
        key, body = self._sample(topic)
        if kind == "bad_json":
            raw = orjson.dumps(body)
            return SimEvent(topic, key.encode(), raw[: rng.randrange(1, len(raw))], kind)
        if kind == "bad_currency":
            body["currency"] = "XYZ"
        elif kind == "oversized":
            body["debug_trace"] = rng.randbytes(OVERSIZED_BYTES // 2).hex()
        elif kind == "missing_field":
            del body[rng.choice(REQUIRED[topic])]
        else:
            epoch_ms = ("occurred_at", int(self._clock.timestamp() * 1000))
            field, value = WRONG_TYPES.get(topic, epoch_ms)
            body[field] = value
        return self._emit(topic, key, body, kind)

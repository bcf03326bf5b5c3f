"""Identity normalisation for fraud rules, and the keyed hash that is all the index ever stores.

Emails are compared after normalisation, per provider:

| provider domains                            | lower-case | drop dots | strip tag after |
|---------------------------------------------|------------|-----------|-----------------|
| gmail.com, googlemail.com (-> gmail.com)    | yes        | yes       | `+`             |
| outlook.com, hotmail.com, live.com, msn.com | yes        | no        | `+`             |
| icloud.com, me.com, mac.com                 | yes        | no        | `+`             |
| fastmail.com, fastmail.fm                   | yes        | no        | `+`             |
| proton.me, protonmail.com, pm.me            | yes        | no        | `+`             |
| yahoo.com                                   | yes        | no        | `-`             |
| any other domain                            | yes        | no        | no              |

Other domains keep `+tags`: many company mail servers treat `+` as part of the mailbox name.
Addresses: case folded, accents and punctuation removed, common street words abbreviated one way,
spaces dropped from postal codes, region ignored. IPv6 is compared by its /64 (one household or
device has a whole /64); IPv4-mapped IPv6 is the IPv4 address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from disposable_email_domains import blocklist

from schemas.models import Context, ShippingAddress

SignalKind = Literal["email", "device", "payment", "address", "ip", "ip_ua"]


@dataclass(frozen=True, slots=True)
class ProviderRule:
    """How a mail provider reads the local part of an address."""

    drop_dots: bool = False
    tag_separator: str | None = None
    canonical_domain: str | None = None


_GMAIL = ProviderRule(drop_dots=True, tag_separator="+", canonical_domain="gmail.com")
_PLUS = ProviderRule(tag_separator="+")
PROVIDER_RULES: Mapping[str, ProviderRule] = {
    "gmail.com": _GMAIL,
    "googlemail.com": _GMAIL,
    **dict.fromkeys(("outlook.com", "hotmail.com", "live.com", "msn.com"), _PLUS),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), _PLUS),
    **dict.fromkeys(("fastmail.com", "fastmail.fm"), _PLUS),
    **dict.fromkeys(("proton.me", "protonmail.com", "pm.me"), _PLUS),
    "yahoo.com": ProviderRule(tag_separator="-"),
}

STREET_WORDS: Mapping[str, str] = {
    "street": "st", "str": "st", "strasse": "st", "avenue": "ave", "av": "ave", "road": "rd",
    "boulevard": "blvd", "drive": "dr", "lane": "ln", "place": "pl", "court": "ct",
    "square": "sq", "apartment": "apt", "flat": "apt", "unit": "apt", "suite": "ste",
    "north": "n", "south": "s", "east": "e", "west": "w",
}  # fmt: skip
_NON_WORD = re.compile(r"[^\w]+")


def normalise_email(raw: str | None) -> str | None:
    """The mailbox an address delivers to, as the provider reads it; None if not an address."""
    if raw is None:
        return None
    local, at, domain = raw.strip().casefold().rpartition("@")
    domain = domain.rstrip(".")
    if not at or not local or "@" in local or "." not in domain or " " in raw.strip():
        return None
    rule = PROVIDER_RULES.get(domain, ProviderRule())
    if rule.tag_separator:
        local = local.split(rule.tag_separator, 1)[0]
    if rule.drop_dots:
        local = local.replace(".", "")
    if not local:
        return None
    return f"{local}@{rule.canonical_domain or domain}"


def email_domain(normalised: str) -> str:
    """The domain of a normalised address."""
    return normalised.rpartition("@")[2]


def is_disposable(normalised_email: str) -> bool:
    """Whether the address (or a parent of its domain) is a known throwaway-mail domain."""
    labels = email_domain(normalised_email).split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


def _fold(text: str | None) -> str:
    """Case-folded, accents and punctuation removed, whitespace collapsed."""
    if not text:
        return ""
    text = text.casefold().replace("ß", "ss")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", text).replace("_", " ").split())


def _street(text: str | None) -> str:
    words = _fold((text or "").replace("#", " apt ")).split()
    return " ".join(STREET_WORDS.get(word, word) for word in words)


def normalise_address(address: ShippingAddress | None) -> str | None:
    """`line1|line2|postal|city|country` in one canonical spelling; None if too sparse to match."""
    if address is None or not _fold(address.line1):
        return None
    postal = _fold(address.postal_code).replace(" ", "")
    city = _fold(address.city)
    if not postal and not city:
        return None
    country = (address.country or "").upper()
    return "|".join((_street(address.line1), _street(address.line2), postal, city, country))


def normalise_ip(raw: str | None) -> str | None:
    """An IPv4 address, or the /64 network of an IPv6 one; None if not an address."""
    if raw is None:
        return None
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def normalise_user_agent(raw: str | None) -> str | None:
    """The user agent, lower-cased with whitespace collapsed; None if empty."""
    if raw is None:
        return None
    folded = " ".join(raw.split()).lower()
    return folded or None


def _stripped(raw: str | None) -> str | None:
    return (raw or "").strip() or None


def identity_signals(context: Context | None) -> dict[SignalKind, str]:
    """The normalised signals a context carries (missing or invalid parts are left out)."""
    if context is None:
        return {}
    ip, agent = normalise_ip(context.ip), normalise_user_agent(context.user_agent)
    found: dict[SignalKind, str | None] = {
        "email": normalise_email(context.email),
        "device": _stripped(context.device_id),
        "payment": _stripped(context.payment_fingerprint),
        "address": normalise_address(context.shipping_address),
        "ip": ip,
        "ip_ua": f"{ip}|{agent}" if ip and agent else None,
    }
    return {kind: value for kind, value in found.items() if value is not None}


def keyed_hash(key: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of `kind:value` under the secret `key`, as 64 hex digits."""
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

"""Identity normalisation for fraud rules, and the keyed hash that is all the index ever stores.

Emails are compared after normalisation, per provider (`PROVIDERS`: one table, every regional
domain of a provider listed with it): everything is lower-cased; Gmail drops dots and `+tags`
(googlemail.com is gmail.com); the consumer providers that deliver `+tag` addresses to the
mailbox (Microsoft, Apple, Proton, Fastmail, Zoho, Yandex, Hey) drop `+tags`; those whose mailbox
names cannot contain `+` (Yahoo, AOL) drop them too, and Yahoo also its `-keyword` disposable
addresses. Any other domain keeps `+tags`: many company mail servers treat `+` as part of the
mailbox name.
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
    tag_separators: tuple[str, ...] = ()
    canonical_domain: str | None = None


def _regional(name: str, suffixes: str) -> tuple[str, ...]:
    """`name` under each of the space-separated top-level suffixes."""
    return tuple(f"{name}.{suffix}" for suffix in suffixes.split())


_MICROSOFT_TLDS = (
    "com fr de es it nl be at ch dk fi se no pt ie gr pl cz hu ro sk co.uk co.jp co.kr co.id "
    "co.il co.nz co.th co.za com.au com.br com.ar com.mx com.tr com.sg com.my com.vn ca cl jp "
    "kr lv lt in sa ph"
)
_YAHOO_TLDS = (
    "com fr de es it nl be at ch dk fi se no pt ie gr pl cz hu ro co.uk co.in co.id co.nz co.th "
    "co.za com.au com.br com.ar com.mx com.tr com.sg com.my com.vn com.ph com.hk com.tw ca cn "
    "in"
)
_GMAIL = ProviderRule(drop_dots=True, tag_separators=("+",), canonical_domain="gmail.com")
_PLUS = ProviderRule(tag_separators=("+",))
PROVIDERS: tuple[tuple[ProviderRule, tuple[str, ...]], ...] = (
    (_GMAIL, ("gmail.com", "googlemail.com")),
    (_PLUS, (
        *_regional("outlook", _MICROSOFT_TLDS), *_regional("hotmail", _MICROSOFT_TLDS),
        *_regional("live", _MICROSOFT_TLDS), "msn.com", "windowslive.com", "passport.com",
    )),
    (_PLUS, ("icloud.com", "me.com", "mac.com")),
    (_PLUS, ("proton.me", "protonmail.com", "protonmail.ch", "pm.me")),
    (_PLUS, ("fastmail.com", "fastmail.fm")),
    (_PLUS, ("zoho.com", "zohomail.com", "zohomail.eu", "zohomail.in")),
    (_PLUS, ("yandex.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "ya.ru")),
    (_PLUS, ("hey.com",)),
    (ProviderRule(tag_separators=("+", "-")), (
        *_regional("yahoo", _YAHOO_TLDS), "ymail.com", "rocketmail.com",
    )),
    (_PLUS, ("aol.com", "aol.co.uk", "aol.fr", "aol.de", "aim.com")),  # `+` is not a name
)  # fmt: skip
"""Each mail provider's rule and every domain it serves."""
PROVIDER_RULES: Mapping[str, ProviderRule] = {
    domain: rule for rule, domains in PROVIDERS for domain in domains
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
    for separator in rule.tag_separators:
        local = local.split(separator, 1)[0]
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

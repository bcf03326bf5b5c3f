"""Identity normalisation: tricky emails, addresses and IPs, disposable domains, keyed hashes."""

from __future__ import annotations

import pytest

from processors.identity import (
    PROVIDER_RULES,
    PROVIDERS,
    identity_signals,
    is_disposable,
    keyed_hash,
    normalise_address,
    normalise_email,
    normalise_ip,
    normalise_user_agent,
)
from schemas.models import Context, ShippingAddress


@pytest.mark.parametrize(("raw", "expected"), [
    (" John.Doe+promo@GoogleMail.com ", "johndoe@gmail.com"),
    ("j.o.h.n.d.o.e@gmail.com", "johndoe@gmail.com"),
    ("JOHNDOE@GMAIL.COM.", "johndoe@gmail.com"),
    ("john+x@outlook.com", "john@outlook.com"),
    ("john.smith+x@hotmail.com", "john.smith@hotmail.com"),
    ("ann+news@icloud.com", "ann@icloud.com"),
    ("ann+a+b@proton.me", "ann@proton.me"),
    ("john-shopping@yahoo.com", "john@yahoo.com"),
    ("john+x@example.com", "john+x@example.com"),
    ("J.Doe@Example.COM", "j.doe@example.com"),
    ("john-x@outlook.com", "john-x@outlook.com"),
])  # fmt: skip
def test_emails_normalise_the_way_their_provider_delivers(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("name+promo@yahoo.fr", "name@yahoo.fr"),
    ("name-shop@yahoo.co.uk", "name@yahoo.co.uk"),
    ("name+x@ymail.com", "name@ymail.com"),
    ("Name+Promo@Hotmail.FR", "name@hotmail.fr"),
    ("name+x@outlook.de", "name@outlook.de"),
    ("name+x@live.co.uk", "name@live.co.uk"),
    ("name+x@outlook.com.br", "name@outlook.com.br"),
    ("n.a.m.e+x@googlemail.com", "name@gmail.com"),
    ("name+x@aol.com", "name@aol.com"),
    ("name+x@yandex.ru", "name@yandex.ru"),
    ("name+x@protonmail.ch", "name@protonmail.ch"),
    ("name+x@yahoo.co.jp", "name+x@yahoo.co.jp"),  # Yahoo Japan: another company, other rules
    ("name+x@outlook.example", "name+x@outlook.example"),
])  # fmt: skip
def test_regional_provider_domains_drop_their_tags(raw, expected):
    assert normalise_email(raw) == expected


def test_every_provider_domain_has_one_rule():
    listed = [domain for _, domains in PROVIDERS for domain in domains]
    assert len(listed) == len(set(listed))
    assert len(PROVIDER_RULES) == len(listed)
    assert all(d == d.casefold() and "." in d and not d.startswith(".") for d in listed)


@pytest.mark.parametrize("raw", [
    None, "", "   ", "@x.com", "a@b", "no-at-sign.com", "a b@x.com", "+tag@gmail.com", "a@@x.com",
])  # fmt: skip
def test_what_is_not_an_email_address_is_none(raw):
    assert normalise_email(raw) is None


@pytest.mark.parametrize(("email", "disposable"), [
    ("x@mailinator.com", True), ("x@sub.mailinator.com", True), ("x@guerrillamail.com", True),
    ("x@gmail.com", False), ("x@example.org", False),
])  # fmt: skip
def test_disposable_domains_come_from_the_maintained_list(email, disposable):
    assert is_disposable(email) is disposable


def address(
    line1: str | None,
    postal: str | None = "NW1 6XE",
    city: str | None = "London",
    country: str = "GB",
    line2: str | None = None,
    region: str | None = None,
) -> ShippingAddress:
    return ShippingAddress(line1=line1, line2=line2, city=city, region=region,
                           postal_code=postal, country=country)  # fmt: skip


SAME_PLACE = [
    (address("12 Baker Street"), address("12 baker st.", postal="nw16xe", city="LONDON")),
    (address("12 Baker Street"), address("  12   BAKER   STREET ")),
    (address("Hauptstraße 5", "10115", "Berlin", "DE"),
     address("Hauptstrasse 5", "10115", "berlin", "DE")),
    (address("1 Rue de l'Église", "75001", "Paris", "FR"),
     address("1 rue de l eglise", "75001", "PARIS", "FR")),
    (address("5 Main Avenue", line2="Apartment 4"), address("5 main ave", line2="apt 4")),
    (address("5 Main Avenue", line2="Flat 4"), address("5 Main Av.", line2="#4")),
    (address("9 North Road"), address("9 N Rd")),
    (address("12 Baker Street", region="Greater London"), address("12 Baker St", region="LDN")),
    (address("7 Elm Boulevard", postal="SW1A 1AA"), address("7 elm blvd", postal="sw1a1aa")),
    (address("3 Oak Lane"), address("3 Oak Ln")),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), SAME_PLACE)
def test_spellings_of_one_address_normalise_equal(a, b):
    assert normalise_address(a) is not None
    assert normalise_address(a) == normalise_address(b)


@pytest.mark.parametrize(("a", "b"), [
    (address("12 Baker Street"), address("14 Baker Street")),
    (address("12 Baker Street"), address("12 Baker Street", postal="NW1 6XF")),
    (address("12 Baker Street", line2="Flat 1"), address("12 Baker Street", line2="Flat 2")),
    (address("12 Baker Street", country="GB"), address("12 Baker Street", country="IE")),
])  # fmt: skip
def test_different_addresses_stay_different(a, b):
    assert normalise_address(a) != normalise_address(b)


@pytest.mark.parametrize("sparse", [
    None, address(None), address("  "), address("12 Baker Street", postal=None, city=None),
])  # fmt: skip
def test_an_address_too_sparse_to_match_is_none(sparse):
    assert normalise_address(sparse) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("198.51.100.7", "198.51.100.7"),
    (" 198.51.100.7 ", "198.51.100.7"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:0DB8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("999.1.1.1", None), ("not an ip", None), ("", None), (None, None),
])  # fmt: skip
def test_ips_normalise_to_an_address_or_a_v6_slash_64(raw, expected):
    assert normalise_ip(raw) == expected


def test_user_agents_compare_without_case_or_spacing():
    assert normalise_user_agent(" Mozilla/5.0  (X11) ") == "mozilla/5.0 (x11)"
    assert normalise_user_agent("   ") is None


def test_a_context_yields_only_the_signals_it_really_has():
    full = Context(email="A.B@gmail.com", ip="198.51.100.7", user_agent="UA", device_id=" d-1 ",
                   payment_fingerprint="fp", shipping_address=address("1 High St"))  # fmt: skip
    assert identity_signals(full) == {
        "email": "ab@gmail.com", "device": "d-1", "payment": "fp",
        "address": "1 high st||nw16xe|london|GB", "ip": "198.51.100.7", "ip_ua": "198.51.100.7|ua",
    }  # fmt: skip
    assert identity_signals(Context(ip="198.51.100.7")) == {"ip": "198.51.100.7"}
    assert identity_signals(Context(email="nope", user_agent="UA", device_id="  ")) == {}
    assert identity_signals(None) == {}


def test_keyed_hashes_depend_on_key_and_kind_and_are_stable():
    digest = keyed_hash(b"k" * 16, "email", "ab@gmail.com")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == keyed_hash(b"k" * 16, "email", "ab@gmail.com")
    assert digest != keyed_hash(b"j" * 16, "email", "ab@gmail.com")
    assert digest != keyed_hash(b"k" * 16, "device", "ab@gmail.com")
    assert "ab@gmail" not in digest

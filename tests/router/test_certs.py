"""The TLS listener's certificate index and ALPN registry, without a socket."""

from __future__ import annotations

import ssl

import pytest
import trustme

from dynomesh.certnames import covers
from router.certs import CertificateIndex, leaf_facts
from router.client import ClientConnection
from router.routes import AppRoute, RoutesError, parse_app, parse_certificate
from router.tls import AlpnRegistry
from tests.certificates import issue

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


def certificate(ca: trustme.CA, *names: str, days: int = 90) -> dict[str, str]:
    return issue(ca, *names, days=days)


def route(name: str, hosts: list[str], *certificates: dict[str, str]) -> AppRoute:
    return parse_app({"name": name, "hosts": hosts, "certificates": list(certificates)}, "apps[0]")


@pytest.mark.parametrize("names, host, expected", [
    (["www.example.com"], "www.example.com", True),
    (["*.example.com"], "www.example.com", True),
    (["*.example.com"], "a.b.example.com", False),  # one label only (RFC 6125 §6.4.3)
    (["*.example.com"], "example.com", False),
    (["*.example.com"], "*.example.com", True),
    (["www.example.com"], "*.example.com", False),  # a name does not cover a wildcard host
    (["other.example.com"], "www.example.com", False),
])
def test_which_app_hosts_a_certificate_covers(names, host, expected):
    assert covers(names, host) is expected


def test_the_index_serves_only_the_apps_own_hosts_exact_before_wildcard(ca):
    reports: list[str] = []
    index = CertificateIndex(["http/1.1"], reports.append)
    # The shop's certificate also names blog.example.com, which is another app's host.
    shop = route("shop", ["shop.example.com", "*.shop.example.com"],
                 certificate(ca, "shop.example.com", "*.shop.example.com", "blog.example.com"))
    blog = route("blog", ["blog.example.com"])
    index.replace_all([shop, blog])
    assert index.lookup("SHOP.example.com.") is not None
    assert index.lookup("x.shop.example.com") is index.lookup("shop.example.com")
    assert index.lookup("blog.example.com") is None  # not the shop's to serve
    assert index.lookup("a.b.shop.example.com") is None
    assert len(index) == 2 and reports == []
    special = route("special", ["vip.shop.example.com"], certificate(ca, "vip.shop.example.com"))
    index.update([("special", special)])
    assert index.lookup("vip.shop.example.com") is not index.lookup("x.shop.example.com")
    index.update([("shop", None)])  # the app left: its hosts go, its context is dropped
    assert index.lookup("shop.example.com") is None and index.certificates == 1


def test_a_renewal_beside_the_old_certificate_wins_and_a_kept_one_is_not_reloaded(ca):
    index = CertificateIndex(["http/1.1"], [].append)
    old = certificate(ca, "shop.example.com", days=10)
    index.replace_all([route("shop", ["shop.example.com"], old)])
    first = index.lookup("shop.example.com")
    index.replace_all([route("shop", ["shop.example.com"], old)])  # a new snapshot, same cert
    assert index.lookup("shop.example.com") is first
    new = certificate(ca, "shop.example.com", days=90)
    index.update([("shop", route("shop", ["shop.example.com"], new, old))])
    renewed = index.lookup("shop.example.com")
    assert renewed is not first and index.certificates == 2
    assert isinstance(renewed, ssl.SSLContext)
    index.update([("shop", route("shop", ["shop.example.com"], old, new))])  # order is no matter
    assert index.lookup("shop.example.com") is renewed


def test_an_unusable_certificate_is_reported_by_position_without_the_key(ca):
    reports: list[str] = []
    index = CertificateIndex(["http/1.1"], reports.append)
    good, other = certificate(ca, "shop.example.com"), certificate(ca, "shop.example.com")
    mismatched = {"chain": other["chain"], "key": good["key"]}
    index.replace_all([route("shop", ["shop.example.com"], mismatched)])
    assert index.lookup("shop.example.com") is None
    assert len(reports) == 1 and reports[0].startswith("app shop: certificates[0] not used")
    assert good["key"].splitlines()[1] not in reports[0]


def test_leaf_facts_read_the_names_and_expiry(ca):
    names, not_after = leaf_facts(certificate(ca, "A.example.com", "*.b.example.com")["chain"])
    assert names == ("a.example.com", "*.b.example.com") and not_after.year >= 2026


@pytest.mark.parametrize("raw, problem", [
    ("pem", "expected an object"),
    ({"chain": "x", "key": "-----BEGIN PRIVATE KEY-----"}, "certificates[0].chain: missing, or"),
    ({"chain": "-----BEGIN CERTIFICATE-----"}, "certificates[0].key: missing"),
])
def test_a_malformed_certificate_field_names_its_path_and_never_its_value(raw, problem):
    with pytest.raises(RoutesError) as error:
        parse_certificate(raw, "apps[0].certificates[0]")
    assert problem in str(error.value)
    assert "BEGIN PRIVATE KEY" not in str(error.value)


def test_alpn_registry_prefers_what_was_registered_last_and_falls_back_to_http_1_1():
    registry = AlpnRegistry()
    assert registry.protocols == ("http/1.1",)
    assert registry.factory(None) is ClientConnection

    def h2_factory(router, listener):
        raise NotImplementedError

    registry.register("h2", h2_factory)
    assert registry.protocols == ("h2", "http/1.1")
    assert registry.factory("h2") is h2_factory
    assert registry.factory("spdy/3") is ClientConnection
    registry.register("h2", h2_factory, preferred=False)
    assert registry.protocols == ("http/1.1", "h2")

"""Certificates in the control plane, without I/O: upload checks, key sealing, route entries."""

from __future__ import annotations

import base64
import re
import datetime

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from controlplane.certs.keybox import CertificateKey, KeyFileError, SealError
from controlplane.certs.validate import CertificateInvalid, inspect
from controlplane.feeds.routes import RouteFacts, route_entry
from controlplane.store.models import SealedCertificate
from router.routes import parse_app
from tests import certificates

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
HOSTS = ["shop.localhost", "www.shop.test"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


def issue(ca: trustme.CA, *names: str, days: int = 90, kind=trustme.KeyType.ECDSA):
    """-> (chain PEM, key PEM) of a leaf valid from a day before NOW for `days` days."""
    leaf = certificates.issue(ca, *names, days=days, key_type=kind, now=NOW)
    return leaf["chain"], leaf["key"]


def test_a_fitting_certificate_gives_its_facts(ca):
    chain, key = issue(ca, "www.shop.test", "other.test")
    facts = inspect(chain, key, HOSTS, NOW)
    assert facts.names == ("www.shop.test", "other.test")
    assert facts.covered == ("www.shop.test",)
    assert facts.not_after == NOW + datetime.timedelta(days=90)
    assert len(facts.fingerprint) == 64 and facts.chain_length == 1


def test_an_rsa_wildcard_with_an_intermediate_in_order(ca):
    intermediate = ca.create_child_ca()
    chain, key = issue(intermediate, "*.shop.test", kind=trustme.KeyType.RSA)
    facts = inspect(chain, key, HOSTS, NOW)
    assert facts.covered == ("www.shop.test",) and facts.chain_length == 2


def reason(chain: str, key: str, hosts=HOSTS, now=NOW) -> str:
    with pytest.raises(CertificateInvalid) as error:
        inspect(chain, key, hosts, now)
    message = str(error.value)
    assert not any(line in message for line in certificates.key_lines(key))
    return message


def test_each_refusal_names_its_problem(ca):
    chain, key = issue(ca, "www.shop.test")
    other_chain, other_key = issue(ca, "www.shop.test")
    assert "does not belong to the certificate" in reason(chain, other_key)
    assert "holds a private key" in reason(key, chain)  # CERT and KEY swapped
    assert "no certificate in the certificate file" in reason("hello", key)
    assert "does not parse" in reason("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                      "-----END CERTIFICATE-----\n", key)
    assert "no private key in the key file" in reason(chain, "hello")
    assert "cover none of the app's hosts (shop.localhost, www.shop.test)" in reason(
        *issue(ca, "elsewhere.test"))
    assert "expired on 2027-03-07" in reason(chain, key, now=NOW + datetime.timedelta(days=91))
    intermediate = ca.create_child_ca()
    leaf_chain, leaf_key = issue(intermediate, "www.shop.test")
    leaf, middle = leaf_chain.split("-----END CERTIFICATE-----\n")[:2]
    out_of_order = middle + "-----END CERTIFICATE-----\n" + leaf + "-----END CERTIFICATE-----\n"
    # The intermediate first: the key is the leaf's, so that is what is said first.
    assert "does not belong" in reason(out_of_order, leaf_key)
    unrelated = issue(ca.create_child_ca(), "x.test")[0].split("-----END CERTIFICATE-----\n")[1]
    wrong_issuer = leaf + "-----END CERTIFICATE-----\n" + unrelated + \
        "-----END CERTIFICATE-----\n"
    assert "certificate 1 of the chain is not issued by certificate 2" in reason(
        wrong_issuer, leaf_key)


def test_a_key_with_a_passphrase_is_refused_with_how_to_remove_it(ca):
    chain, key = issue(ca, "www.shop.test")
    loaded = serialization.load_pem_private_key(key.encode(), None)
    locked = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret")).decode()
    assert "protected by a passphrase" in reason(chain, locked)


def test_sealed_keys_open_only_with_their_key_and_their_row(tmp_path):
    path = tmp_path / "certificate.key"
    path.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    box = CertificateKey.load(path)
    sealed = box.seal(b"-----BEGIN PRIVATE KEY-----", b"cert-1")
    assert sealed.startswith(f"v1.{box.key_id}.") and "PRIVATE" not in sealed
    assert box.open(sealed, b"cert-1") == b"-----BEGIN PRIVATE KEY-----"
    with pytest.raises(SealError, match="another row"):
        box.open(sealed, b"cert-2")
    other = CertificateKey(bytes(32))
    with pytest.raises(SealError, match=f"sealed under certificate key {box.key_id}"):
        other.open(sealed, b"cert-1")
    assert repr(box) == f"<CertificateKey {box.key_id}>"


@pytest.mark.parametrize("content, problem", [
    (None, "no such file (make one"), ("not base64!", "not base64"),
    (base64.b64encode(b"short").decode(), "5 bytes, not 32")])
def test_a_bad_key_file_is_named_with_the_fix(tmp_path, content, problem):
    path = tmp_path / "certificate.key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeyFileError, match=re.escape(problem)):
        CertificateKey.load(path)


def test_route_entries_carry_opened_certificates_that_the_router_parses(ca):
    chain, key = issue(ca, "www.shop.test")
    facts = RouteFacts("shop", False, tuple(HOSTS), True, 1, (),
                       (SealedCertificate("c1", chain, "sealed-1"),
                        SealedCertificate("c2", chain, "unopenable")))
    entry = route_entry(facts, lambda c: key if c.key_sealed == "sealed-1" else None)
    assert entry["certificates"] == [{"chain": chain, "key": key}]
    assert parse_app(entry, "apps[0]").certificates[0].chain == chain
    # An app without certificates has no field at all (older routers, smaller feeds).
    assert "certificates" not in route_entry(RouteFacts("a", False, ("a.localhost",), True, 1,
                                                        ()), lambda c: key)

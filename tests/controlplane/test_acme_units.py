"""The ACME pieces that need no CA: JWS signing, key authorizations, CSRs, order states,
problem documents, Retry-After, the issued chain's checks, and the renewal policy."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from controlplane.acme.jws import AccountKey, b64url
from controlplane.acme.policy import DAY, RenewalPolicy
from controlplane.acme.protocol import (Authorization, AuthzStatus, Order, Problem,
                                        ProtocolError, Step, check_issued, key_authorization,
                                        make_csr, next_step, retry_after)
from controlplane.store.models import AcmeDomain
from dynomesh.backoff import BackoffPolicy

pytestmark = pytest.mark.unit


def b64url_decode(text: str) -> bytes:
    """RFC 7515 §2's base64url, padding put back: what a CA does to read a JWS."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


def verify(key: AccountKey, jws: dict) -> tuple[dict, bytes]:
    """Check a flattened JWS as a CA does (RFC 7515 §5.2); returns (header, payload)."""
    header = json.loads(b64url_decode(jws["protected"]))
    raw = b64url_decode(jws["signature"])
    assert len(raw) == 64  # RFC 7518 §3.4: R and S, 32 bytes each, not DER
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(key.jwk["x"]), "big"),
        int.from_bytes(b64url_decode(key.jwk["y"]), "big"), ec.SECP256R1()).public_key()
    public.verify(signature, f"{jws['protected']}.{jws['payload']}".encode(),
                  ec.ECDSA(hashes.SHA256()))
    return header, b64url_decode(jws["payload"])


def test_a_request_before_the_account_exists_carries_the_key_and_after_it_the_account_url():
    key = AccountKey.generate()
    header, payload = verify(key, key.sign({"termsOfServiceAgreed": True},
                                           url="https://ca/new-acct", nonce="n1"))
    assert header == {"alg": "ES256", "nonce": "n1", "url": "https://ca/new-acct",
                      "jwk": key.jwk}
    assert json.loads(payload) == {"termsOfServiceAgreed": True}
    header, payload = verify(key, key.sign(None, url="https://ca/order/1", nonce="n2",
                                           kid="https://ca/acct/7"))
    assert header["kid"] == "https://ca/acct/7" and "jwk" not in header
    assert payload == b""  # POST-as-GET (RFC 8555 §6.3)


def test_the_thumbprint_is_rfc_7638s_and_survives_a_round_trip_through_pem():
    key = AccountKey.generate()
    canonical = ('{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}'
                 % (key.jwk["x"], key.jwk["y"])).encode()
    assert key.thumbprint == b64url(hashlib.sha256(canonical).digest())
    assert AccountKey.from_pem(key.to_pem()).thumbprint == key.thumbprint
    assert key_authorization(TOKEN, key.thumbprint) == f"{TOKEN}.{key.thumbprint}"


def test_a_key_that_is_not_p256_and_a_token_that_is_not_base64url_are_refused():
    with pytest.raises(ValueError, match="P-256"):
        AccountKey(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ProtocolError, match="base64url"):
        key_authorization("../../etc/passwd-and-more", "x")


def test_the_csr_names_the_domain_in_its_san_and_is_signed_by_the_new_key():
    der, key_pem = make_csr("shop.example.com")
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "shop.example.com"]
    key = serialization.load_pem_private_key(key_pem, None)
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()


def order(status: str, certificate: str | None = None) -> Order:
    return Order.parse("https://ca/order/1", {
        "status": status, "authorizations": ["https://ca/authz/1"],
        "finalize": "https://ca/finalize/1", "certificate": certificate})


@pytest.mark.parametrize("status, finalized, step", [
    ("pending", False, Step.AUTHORIZE), ("ready", False, Step.FINALIZE),
    ("processing", True, Step.WAIT), ("ready", True, Step.WAIT), ("valid", True, Step.DOWNLOAD),
    ("invalid", False, Step.FAIL), ("invalid", True, Step.FAIL),
])
def test_what_the_client_does_next_follows_the_orders_status(status, finalized, step):
    assert next_step(order(status, "https://ca/cert/1"), finalized=finalized) is step


def test_orders_the_client_cannot_use_are_protocol_errors():
    with pytest.raises(ProtocolError, match="before this client finalized"):
        next_step(order("valid", "https://ca/cert/1"), finalized=False)
    with pytest.raises(ProtocolError, match="without a certificate URL"):
        next_step(order("valid"), finalized=True)
    with pytest.raises(ProtocolError, match="unknown status 'done'"):
        order("done")
    with pytest.raises(ProtocolError, match="authorizations or finalize"):
        Order.parse("u", {"status": "pending"})


def test_an_authorization_keeps_its_http01_challenge_and_its_error():
    authz = Authorization.parse("https://ca/authz/1", {
        "status": "invalid", "identifier": {"type": "dns", "value": "shop.example.com"},
        "challenges": [
            {"type": "dns-01", "url": "https://ca/chal/dns", "token": TOKEN},
            {"type": "http-01", "url": "https://ca/chal/http", "token": TOKEN,
             "status": "invalid", "error": {"type": "urn:ietf:params:acme:error:connection",
                                            "detail": "connection refused"}}]})
    assert authz.status is AuthzStatus.INVALID and authz.domain == "shop.example.com"
    assert authz.http01.url == "https://ca/chal/http"
    assert str(authz.http01.error) == "connection: connection refused"


def test_a_problem_reads_its_type_detail_and_subproblems():
    problem = Problem.parse({"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                             "detail": "Error creating new order",
                             "subproblems": [{"detail": "a.example: forbidden"}]}, 400)
    assert problem.short_type == "rejectedIdentifier" and problem.status == 400
    assert str(problem) == ("rejectedIdentifier: Error creating new order "
                            "(a.example: forbidden)")
    assert Problem.parse("<html>").detail == "the CA answered without a problem document"


@pytest.mark.parametrize("value, expected", [
    (None, 2.0), ("", 2.0), ("7", 7.0), ("3600", 30.0), ("soon", 2.0),
    ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
])
def test_retry_after_is_seconds_or_a_date_and_bounded(value, expected):
    now = datetime.datetime(2015, 10, 21, 7, 28, 0, tzinfo=datetime.timezone.utc).timestamp()
    assert retry_after(value, now, default=2.0, longest=30.0) == expected


def self_signed(name: str, key) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_issued_chain_must_name_the_domain_and_certify_our_key():
    _, key_pem = make_csr("shop.example.com")
    key = serialization.load_pem_private_key(key_pem, None)
    issued = check_issued("shop.example.com", self_signed("shop.example.com", key), key_pem)
    assert issued.not_after - issued.not_before == 90 * DAY
    with pytest.raises(ProtocolError, match="does not name shop.example.com"):
        check_issued("shop.example.com", self_signed("other.example.com", key), key_pem)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ProtocolError, match="not for the key"):
        check_issued("shop.example.com", self_signed("shop.example.com", stranger), key_pem)


def domain(status: str, *, not_after=None, failures=0, retry_at=None) -> AcmeDomain:
    return AcmeDomain("d1", "a1", "shop", "shop.example.com", status, None, not_after,
                      failures, retry_at)


def test_a_domain_is_due_at_once_30_days_before_expiry_or_at_its_retry():
    policy = RenewalPolicy()
    assert policy.due_at(domain("pending")) == 0.0
    assert policy.due_at(domain("issued", not_after=100 * DAY)) == 70 * DAY
    assert policy.due_at(domain("failed", not_after=100 * DAY, retry_at=5.0)) == 5.0


def test_failures_back_off_from_five_minutes_to_a_day():
    policy = RenewalPolicy(retry=BackoffPolicy(base=300.0, cap=DAY))
    delays = []
    failures = 0
    for _ in range(12):
        failures, retry_at = policy.after_failure(failures, 1000.0, random.Random(1))
        delays.append(retry_at - 1000.0)
    assert failures == 12
    assert delays[:4] == [300.0, 600.0, 1200.0, 2400.0] and delays[-1] == DAY
    with pytest.raises(ValueError, match="renew-before"):
        RenewalPolicy(renew_before=0)


def test_a_challenge_being_validated_is_in_the_apps_route_entry_and_only_then():
    from controlplane.feeds.routes import RouteFacts, route_entry

    facts = RouteFacts(name="shop", maintenance=False, hosts=("shop.localhost",),
                       has_release=False, web_quantity=0, web_dynos=())
    assert "acme_challenges" not in route_entry(facts)
    answer = f"{TOKEN}.thumb"
    entry = route_entry(RouteFacts(**{**facts.__dict__, "acme_challenges": ((TOKEN, answer),)}))
    assert entry["acme_challenges"] == [{"token": TOKEN, "key_authorization": answer}]


class ScriptedCA:
    """The answers a CA gives, in order: AcmeClient's one HTTP exchange replaced, so its own
    decisions (nonces, badNonce, Retry-After, deadlines) run without a network."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []  # (url, nonce signed with)

    def install(self, client):
        async def exchange(url, body, accept):
            header = json.loads(b64url_decode(body["protected"]))
            self.sent.append((url, header["nonce"]))
            return self.answers.pop(0)
        client._exchange = exchange
        client._nonce = "first"
        return client


def bad_nonce(fresh: str):
    return 400, {"Replay-Nonce": fresh}, {"type": "urn:ietf:params:acme:error:badNonce",
                                          "detail": "JWS has an invalid anti-replay nonce"}


async def test_a_refused_nonce_is_replaced_by_the_one_the_refusal_carries_three_times_at_most():
    from controlplane.acme.client import AcmeClient, AcmeError

    ca = ScriptedCA(bad_nonce("n2"), bad_nonce("n3"), (200, {"Replay-Nonce": "n4"}, {"ok": 1}))
    client = ca.install(AcmeClient("https://ca/dir", AccountKey.generate(), ssl_context=None))
    assert (await client.post("https://ca/x", {}, "testing"))[2] == {"ok": 1}
    assert [nonce for _, nonce in ca.sent] == ["first", "n2", "n3"]
    assert client._nonce == "n4"  # kept for the next request (RFC 8555 §7.2)

    ca = ScriptedCA(*(bad_nonce(f"m{i}") for i in range(4)))
    ca.install(client)
    with pytest.raises(AcmeError, match="badNonce") as caught:
        await client.post("https://ca/x", {}, "testing")
    assert len(ca.sent) == 4 and caught.value.problem.status == 400

    ca = ScriptedCA((403, {"Replay-Nonce": "r"}, {
        "type": "urn:ietf:params:acme:error:unauthorized", "detail": "no such account"}))
    ca.install(client)
    with pytest.raises(AcmeError) as caught:
        await client.post("https://ca/x", {}, "reading the order")
    assert str(caught.value) == "reading the order: unauthorized: no such account"
    assert len(ca.sent) == 1  # not retried


async def test_polling_waits_what_retry_after_asks_else_backs_off_and_gives_up_at_its_deadline():
    from controlplane.acme.client import AcmeClient, AcmeUnavailable, PollSettings

    now = [1000.0]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    def authz(status, **headers):
        return 200, {"Replay-Nonce": "n", **headers}, {
            "status": status, "identifier": {"value": "shop.example.com"}, "challenges": []}

    settings = PollSettings(backoff=BackoffPolicy(base=0.25, cap=8.0), deadline=20.0)
    ca = ScriptedCA(authz("pending", **{"Retry-After": "3"}), authz("pending"),
                    authz("pending"), authz("valid"))
    client = ca.install(AcmeClient("https://ca/dir", AccountKey.generate(), ssl_context=None,
                                   settings=settings, clock=lambda: now[0], sleep=sleep))
    assert (await client.wait_authorization("https://ca/authz/1")).status is AuthzStatus.VALID
    assert slept == [3.0, 0.25, 0.5]  # what Retry-After asked, then the back-off's steps

    slept.clear()
    ca = ScriptedCA(*(authz("pending") for _ in range(10)))
    ca.install(client)
    with pytest.raises(AcmeUnavailable, match="kept the authorization .* pending for 20 s"):
        await client.wait_authorization("https://ca/authz/1")
    assert sum(slept) <= 20.0


def test_the_acme_directory_must_be_https():
    from controlplane.acme.settings import LETS_ENCRYPT, AcmeSettings

    assert AcmeSettings().directory_url == LETS_ENCRYPT
    with pytest.raises(ValueError, match=r"--acme-directory must be an https:// URL"):
        AcmeSettings(directory_url="http://127.0.0.1:14000/dir")

"""Certificates through the API on each store backend: checked on the way in, keys sealed in
the store, never in a response, and in the route feed for routers only."""

from __future__ import annotations

import base64

import pytest
import trustme

from tests.certificates import issue, key_lines
from tests.controlplane.followers import Follower
from controlplane.store.models import Role

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "certificate.key"
    path.write_text(base64.b64encode(bytes(range(1, 33))).decode() + "\n")
    return path


async def test_certificates_in_checked_out_without_keys_and_to_routers_in_the_feed(
        node_factory, key_file, ca):
    api = await node_factory(certificate_key_file=key_file)
    assert (await api.call("POST", "/apps", json={"name": "shop"}))[0] == 201
    await api.call("POST", "/apps/shop/domains", json={"hostname": "www.shop.test"})
    uploaded = issue(ca, "www.shop.test")
    status, cert, response = await api.call("POST", "/apps/shop/certs", json=uploaded)
    assert status == 201, cert
    assert cert["names"] == ["www.shop.test"] and cert["source"] == "uploaded"
    assert cert["not_after"] > cert["not_before"] and len(cert["fingerprint"]) == 64
    text = str(cert)
    status, listed, _ = await api.call("GET", "/apps/shop/certs")
    assert [c["id"] for c in listed] == [cert["id"]]
    text += str(listed)
    # Again: refused as a duplicate.
    status, body, _ = await api.call("POST", "/apps/shop/certs", json=uploaded)
    assert status == 409 and "already on shop" in body["message"]
    # What ACME stores: a renewal replaces the previous auto certificate for its domain.
    service = api.node.context.certs
    first = issue(ca, "www.shop.test")
    first_auto = await service.put_certificate("shop", first["chain"], first["key"],
                                               source="auto", domain="www.shop.test")
    renewed = issue(ca, "www.shop.test", days=89)
    second_auto = await service.put_certificate("shop", renewed["chain"], renewed["key"],
                                                source="auto", domain="www.shop.test")
    status, listed, _ = await api.call("GET", "/apps/shop/certs")
    assert [(c["id"], c["source"], c["domain"]) for c in listed] == [
        (cert["id"], "uploaded", None), (second_auto.id, "auto", "www.shop.test")]
    assert first_auto.id not in str(listed)
    async with await Follower.open(api.url, "/feeds/routes", api.tokens[Role.ROUTER]) as feed:
        await feed.until(lambda f: len(f.entries.get("shop", {}).get("certificates", [])) == 2)
        assert feed.entries["shop"]["certificates"] == [
            {"chain": uploaded["chain"].strip() + "\n", "key": uploaded["key"]},
            {"chain": renewed["chain"].strip() + "\n", "key": renewed["key"]}]
        # A user token may watch the feed too, but gets no private key.
        async with await Follower.open(api.url, "/feeds/routes", api.tokens[Role.USER]) as seen:
            await seen.until(lambda f: len(f.entries.get("shop", {}).get("certificates", []))
                             == 2)
            assert seen.entries["shop"]["certificates"] == [
                {"chain": uploaded["chain"].strip() + "\n"},
                {"chain": renewed["chain"].strip() + "\n"}]
        status, removed, _ = await api.call("DELETE", f"/apps/shop/certs/{cert['id']}")
        assert status == 200 and removed["id"] == cert["id"]
        await feed.until(lambda f: len(f.entries.get("shop", {}).get("certificates", [])) == 1)
    status, body, _ = await api.call("DELETE", f"/apps/shop/certs/{cert['id']}")
    assert status == 404 and "dynomesh certs --app shop" in body["message"]
    # At rest the key is sealed: the store's rows hold no line of it.
    async with api.store.db.read() as tx:
        rows = await tx.fetch("SELECT key_sealed FROM certificates")
    assert rows and all(row["key_sealed"].startswith("v1.") for row in rows)
    for key in (uploaded["key"], renewed["key"]):
        assert not any(line in text + str([dict(r) for r in rows]) for line in key_lines(key))


async def test_a_refused_certificate_names_the_problem(api_factory, key_file, ca):
    api = await api_factory(certificate_key_file=key_file)
    await api.call("POST", "/apps", json={"name": "shop"})
    good, other = issue(ca, "shop.localhost"), issue(ca, "shop.localhost")
    for body, problem in [
        ({"chain": good["chain"], "key": other["key"]}, "does not belong to the certificate"),
        (issue(ca, "www.elsewhere.test"), "cover none of the app's hosts (shop.localhost)"),
        ({"chain": good["key"], "key": good["chain"]}, "holds a private key"),
    ]:
        status, answer, _ = await api.call("POST", "/apps/shop/certs", json=body)
        assert (status, answer["id"]) == (422, "invalid_certificate"), answer
        assert problem in answer["message"]
        assert not any(line in answer["message"] for line in key_lines(body["key"]))
    status, answer, _ = await api.call("POST", "/apps/shop/certs", json={"chain": 1, "key": ""})
    assert status == 422 and "chain must be PEM text" in answer["message"]
    status, answer, _ = await api.call("POST", "/apps/shop/certs", json=good, role=Role.ROUTER)
    assert status == 403


async def test_without_a_certificate_key_uploads_are_refused_with_how_to_give_one(
        api_factory, ca):
    api = await api_factory()
    await api.call("POST", "/apps", json={"name": "shop"})
    status, answer, _ = await api.call("POST", "/apps/shop/certs",
                                       json=issue(ca, "shop.localhost"))
    assert (status, answer["id"]) == (503, "certificates_not_configured")
    assert "--certificate-key-file" in answer["message"]

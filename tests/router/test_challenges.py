"""ACME HTTP-01: the router answers a pending challenge for an app's hosts itself, whatever the
app's state, and only that request (router/challenges.py, docs/routes-format.md)."""

import pytest

from router.routes import RoutesError, parse_app
from tests.router.conftest import app_entry, table_of

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
ANSWER = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
CHALLENGE = [{"token": TOKEN, "key_authorization": ANSWER}]


async def get(router, target, host="shop.example.com", method="GET"):
    client = await router.client()
    response = await client.request(method, target, host=host)
    await client.close()
    return response


@pytest.mark.parametrize("state", [
    {"state": "running", "maintenance": True},  # H80 for everything else
    {"state": "scaled_to_zero"},  # no dynos at all
    {"state": "booting"},  # requests would queue
    {"state": "blank"},  # nothing deployed yet
])
async def test_a_pending_challenge_is_answered_whatever_the_apps_state(router_factory, state):
    router = await router_factory(table_of(
        {"name": "shop", "hosts": ["shop.example.com"], "acme_challenges": CHALLENGE, **state}))
    response = await get(router, f"/.well-known/acme-challenge/{TOKEN}")
    assert response.status == 200 and response.body == ANSWER.encode()
    assert response.get("Content-Type") == b"application/octet-stream"
    fields = router.log_fields()
    assert (fields["at"], fields["status"], fields["desc"]) == ("info", "200",
                                                                 "ACME challenge answered")
    assert fields["bytes"] == str(len(ANSWER))
    assert router.router.metrics.apps["shop"].in_flight == 0


async def test_only_the_pending_token_on_the_apps_hosts_is_answered(dyno_factory,
                                                                    router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(
        app_entry("shop", ["shop.example.com"], [dyno], acme_challenges=CHALLENGE),
        app_entry("blog", ["blog.example.com"], [dyno])))
    # HEAD gets the head alone; another token, another method, another app: the dyno answers.
    head = await get(router, f"/.well-known/acme-challenge/{TOKEN}", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.get("Content-Length")) == len(ANSWER)
    for target, host, method in ((f"/.well-known/acme-challenge/{TOKEN}x", "shop.example.com",
                                  "GET"),
                                 (f"/.well-known/acme-challenge/{TOKEN}", "shop.example.com",
                                  "POST"),
                                 (f"/.well-known/acme-challenge/{TOKEN}", "blog.example.com",
                                  "GET")):
        response = await get(router, target, host=host, method=method)
        assert response.body.startswith(b"web.1 "), (target, host, method)  # the dyno's echo
    assert len(dyno.requests) == 3


async def test_a_withdrawn_challenge_is_no_longer_answered(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(
        app_entry("shop", ["shop.example.com"], [dyno], acme_challenges=CHALLENGE)))
    assert (await get(router, f"/.well-known/acme-challenge/{TOKEN}")).body == ANSWER.encode()
    router.router.table.put(parse_app(app_entry("shop", ["shop.example.com"], [dyno]), "apps[0]"))
    response = await get(router, f"/.well-known/acme-challenge/{TOKEN}")
    assert response.body.startswith(b"web.1 ") and len(dyno.requests) == 1


@pytest.mark.unit
@pytest.mark.parametrize("challenge, message", [
    ({"token": "a/b", "key_authorization": "a/b.x"}, "acme_challenges[0].token: missing or not "
                                                     "base64url"),
    ({"token": TOKEN}, "acme_challenges[0].key_authorization: missing"),
    ({"token": TOKEN, "key_authorization": "other.x"}, "acme_challenges[0].key_authorization: "
                                                       "missing, or not the token"),
    ("x", "acme_challenges[0]: expected an object"),
])
def test_a_bad_challenge_is_refused_naming_its_place(challenge, message):
    with pytest.raises(RoutesError) as caught:
        parse_app({"name": "shop", "hosts": ["shop.example.com"],
                   "acme_challenges": [challenge]}, "apps[0]")
    assert str(caught.value).startswith(f"apps[0].{message}")

"""The pure parts of add-ons: names derived from app names, URLs built, split and masked, SCRAM
verifiers, the registry's kinds, and how `pg:psql` finds and runs psql."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest

from controlplane.addons import errors, naming, scram, urls
from controlplane.addons.registry import AddonRegistry
from controlplane.cli.commands.addons import find_psql, psql_invocation, unfinished

pytestmark = pytest.mark.unit


# --- names ---

def test_names_carry_the_app_name_as_a_plain_identifier_and_a_random_suffix():
    names = naming.derive("postgresql", "hello-world", random.Random(7))
    assert names.name.startswith("postgresql-") and len(names.name) == len("postgresql-") + 6
    suffix = names.name.removeprefix("postgresql-")
    assert names.resource == f"app_hello_world_{suffix}"
    assert naming.RESOURCE.match(names.resource)


def test_the_longest_app_name_fits_postgresqls_identifier_limit():
    names = naming.derive("postgresql", "a" + "b-" * 14 + "c", random.Random(1))
    assert len(names.resource) <= 63
    assert naming.RESOURCE.match(names.resource)


def test_apps_that_differ_only_where_dashes_are_get_different_resources():
    rng = random.Random(3)
    first = naming.derive("postgresql", "ab-c", random.Random(3)).resource
    second = naming.derive("postgresql", "a-bc", random.Random(3)).resource
    assert first != second
    assert naming.derive("postgresql", "ab-c", rng).resource != naming.derive(
        "postgresql", "ab-c", rng).resource  # the same app twice: new suffixes


def test_a_name_that_is_not_an_app_name_is_refused():
    with pytest.raises(ValueError, match="invalid app name"):
        naming.derive("postgresql", 'x"; DROP DATABASE postgres; --', random.Random(1))


def test_identifiers_and_literals_are_quoted_whatever_they_hold():
    assert naming.quote_identifier("app_a") == '"app_a"'
    assert naming.quote_identifier('we"ird') == '"we""ird"'
    assert naming.quote_literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        naming.quote_identifier("a\x00b")


# --- URLs ---

def test_the_server_address_names_no_credentials():
    address = urls.server_address("postgresql://admin:s3cret@db.internal:6543/postgres")
    assert str(address) == "db.internal:6543"
    assert str(urls.server_address("postgres://admin@[::1]/postgres")) == "[::1]:5432"


@pytest.mark.parametrize("bad", ["mysql://admin@h/db", "postgresql:///postgres",
                                 "postgresql://admin:pw@h:99999/db", "not a url"])
def test_a_bad_admin_url_is_refused_without_echoing_it(bad):
    with pytest.raises(urls.BadUrl) as caught:
        urls.server_address(bad)
    assert "pw" not in str(caught.value) and "postgresql://USER:PASSWORD@HOST:PORT" in str(
        caught.value)


def test_an_apps_url_is_percent_encoded_and_splits_back():
    address = urls.ServerAddress("127.0.0.1", 5433)
    url = urls.database_url(address, "app_x_1", "p@ss:w/rd", "app_x_1")
    assert url == "postgresql://app_x_1:p%40ss%3Aw%2Frd@127.0.0.1:5433/app_x_1"
    bare, password = urls.without_password(url)
    assert (bare, password) == ("postgresql://app_x_1@127.0.0.1:5433/app_x_1", "p@ss:w/rd")
    assert urls.masked(url) == "postgresql://app_x_1:***@127.0.0.1:5433/app_x_1"
    assert urls.without_password(bare) == (bare, None)


def test_with_database_keeps_the_server_and_credentials():
    assert urls.with_database("postgresql://a:b@h:1/postgres?sslmode=disable", "app_x") == \
        "postgresql://a:b@h:1/app_x?sslmode=disable"



# --- SCRAM verifiers ---

# RFC 7677 section 3: user "user", password "pencil", the server's salt and 4096 iterations.
RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
RFC7677_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC7677_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_a_verifier_checks_the_rfc_7677_clients_proof_and_signs_as_its_server():
    """A server holding only our StoredKey and ServerKey accepts the RFC's client and
    answers with the RFC's server signature (RFC 5802 section 3)."""
    stored_key, server_key = scram.keys("pencil", RFC7677_SALT)
    client_signature = hmac.new(stored_key, RFC7677_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC7677_PROOF, client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert hmac.new(server_key, RFC7677_AUTH_MESSAGE, hashlib.sha256).digest() == \
        RFC7677_SERVER_SIGNATURE
    assert scram.verifier("pencil", RFC7677_SALT) == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
        f"{base64.b64encode(stored_key).decode()}:{base64.b64encode(server_key).decode()}")


def test_a_verifier_refuses_weak_parameters_and_passwords_it_would_normalise_wrongly():
    for weak in ({"salt": b"short"}, {"salt": RFC7677_SALT, "iterations": 1000}):
        with pytest.raises(ValueError, match="at least 16 bytes and at least 4096"):
            scram.verifier("pencil", **weak)
    for password in ("", "with space", "caf\u00e9"):
        with pytest.raises(ValueError, match="printable ASCII"):
            scram.verifier(password, RFC7677_SALT)


# --- the registry ---

class _Provider:
    kind = "postgresql"
    config_var = "DATABASE_URL"


def test_unknown_kinds_are_refused_with_the_list_of_kinds():
    with pytest.raises(errors.UnknownKind, match=r"no add-on kind 'redis': the kinds are "
                                                 r"postgresql"):
        AddonRegistry().provider("redis")


def test_a_known_kind_without_a_server_says_how_to_configure_one():
    with pytest.raises(errors.NotConfigured, match="--addons-database-url"):
        AddonRegistry().provider("postgresql")


def test_herokus_names_for_a_kind_are_accepted():
    provider = _Provider()
    registry = AddonRegistry({"postgresql": provider})
    assert registry.provider("heroku-postgresql") is provider
    assert registry.provider("PostgreSQL") is provider
    assert registry.provider("heroku-postgresql:essential-0") is provider  # a plan, ignored
    with pytest.raises(errors.UnknownKind, match="no add-on kind 'heroku-redis:mini'"):
        registry.provider("heroku-redis:mini")


# --- pg:psql ---

def test_psql_gets_the_password_through_its_environment_not_its_command_line():
    argv, env = psql_invocation("/usr/bin/psql", "postgresql://r:secret@h:5/d", None,
                                {"HOME": "/x"})
    assert argv == ["/usr/bin/psql", "postgresql://r@h:5/d"]
    assert env == {"HOME": "/x", "PGPASSWORD": "secret"}
    argv, _ = psql_invocation("/usr/bin/psql", "postgresql://r:secret@h:5/d", "SELECT 1", {})
    assert argv[-2:] == ["-c", "SELECT 1"] and not any("secret" in a for a in argv)


def test_psql_is_found_on_path_else_in_the_newest_client_package(tmp_path):
    assert find_psql(path=str(tmp_path), pattern=str(tmp_path / "none" / "*" / "bin")) is None
    for version in ("9", "15", "13"):
        binary = tmp_path / "lib" / version / "bin" / "psql"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    newest = find_psql(path=str(tmp_path / "empty"), pattern=str(tmp_path / "lib/*/bin"))
    assert newest == str(tmp_path / "lib" / "15" / "bin" / "psql")
    assert find_psql(path=str(tmp_path / "lib" / "9" / "bin"),
                     pattern="/nonexistent/*") == str(tmp_path / "lib" / "9" / "bin" / "psql")


def test_a_half_destroyed_addon_is_finished_by_destroy_and_a_half_made_one_either_way():
    gone = {"name": "postgresql-1a2b3c", "kind": "postgresql", "state": "deprovisioning"}
    assert unfinished(gone, "hello") == (
        "postgresql-1a2b3c is being destroyed (interrupted?): finish with `dynomesh "
        "addons:destroy postgresql-1a2b3c --app hello --confirm hello`")
    made = dict(gone, state="provisioning")
    assert unfinished(made, "hello") == (
        "postgresql-1a2b3c is provisioning (interrupted?): finish it with `dynomesh "
        "addons:create postgresql --app hello`, or remove it with `dynomesh addons:destroy "
        "postgresql-1a2b3c --app hello --confirm hello`")

"""Slugs on S3 (moto on loopback): uploads, multipart uploads, failed uploads that leave nothing,
presigned downloads a dyno manager verifies (R17 when the object was tampered with), and the
start-up errors of a missing bucket or no credentials."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess

import pytest

from controlplane.store.models import Role
from dynomgr.assignments import SlugRef
from dynomgr.errors import SlugError
from dynomgr.slugs import SlugCache, default_fetchers
from tests.conftest import dynomesh_argv, dynomesh_env
from tests.controlplane.conftest import HELLO_SLUG, checksum, slug_bytes
from tests.controlplane.followers import DynoManager, Follower
from tests.motoserver import AWS_ENV, NO_CREDENTIALS_ENV

PART = 5 * 2**20  # S3's smallest part: the test slugs stay small


@pytest.fixture
async def s3_api(api_factory, moto_server, aws_env):
    """A control node whose slugs go to a fresh bucket on moto, under the prefix `slugs`."""
    bucket = moto_server.bucket()
    api = await api_factory(slug_store=f"s3://{bucket}/slugs",
                            slug_store_endpoint=moto_server.url, slug_part_size=PART)
    await api.call("POST", "/apps", json={"name": "hello"})
    api.bucket = bucket
    return api


def big_slug() -> bytes:
    """A slug over two parts: random bytes do not compress."""
    return slug_bytes({**HELLO_SLUG, "data.bin": os.urandom(PART + PART // 2)})


async def upload(api, data: bytes, declared: bytes | None = None):
    return await api.call("POST", "/apps/hello/slugs", data=data,
                          headers={"X-Slug-Checksum": checksum(declared or data)})


def fetch_as_agent(api, slug_id: str, sha256: str, directory):
    """Download a slug as a dyno manager does: its token on the control plane's URL only."""
    def authorize(url: str):
        if url.startswith(api.url + "/"):
            return [url], {"Authorization": f"Bearer {api.tokens[Role.DYNOMGR]}"}
        return None

    directory.mkdir()
    cache = SlugCache(directory, default_fetchers(authorize))
    return cache, cache.get(SlugRef(f"{api.url}/slugs/{slug_id}/download", sha256))


async def assign_to_vm1(api, slug_id: str) -> None:
    """Release the slug (its first release runs web=1) and wait until vm-1 is assigned the
    dyno, so that vm-1's token may fetch the slug."""
    vm = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    try:
        await vm.register()
        status, body, _ = await api.call("POST", "/apps/hello/releases", json={"slug": slug_id})
        assert status == 201, body
        async with await Follower.open(api.url, "/feeds/assignments",
                                       api.tokens[Role.DYNOMGR]) as feed:
            await feed.until(lambda f: len(f.entries) == 1)
    finally:
        await vm.close()


@pytest.mark.parametrize("size", ["small", "multipart"])
async def test_a_slug_goes_to_s3_and_only_there(s3_api, moto_server, size):
    data = slug_bytes(HELLO_SLUG) if size == "small" else big_slug()
    status, slug, _ = await upload(s3_api, data)
    assert status == 201, slug
    assert slug["checksum"] == checksum(data) and slug["size"] == len(data)
    key = f"slugs/{slug['id']}.tar.gz"
    assert moto_server.keys(s3_api.bucket) == [key]
    stored = moto_server.client().get_object(Bucket=s3_api.bucket, Key=key)
    assert stored["Body"].read() == data
    # A multipart object's ETag is "<md5 of the part md5s>-<parts>".
    assert stored["ETag"].strip('"').endswith("-2") == (size == "multipart")
    assert moto_server.pending_uploads(s3_api.bucket) == []
    assert list(s3_api.config.slug_dir.glob("*.tar.gz")) == []  # nothing kept on this node
    assert list((s3_api.config.slug_dir / ".incoming").iterdir()) == []


@pytest.mark.parametrize("size", ["small", "multipart"])
@pytest.mark.parametrize("damage, error_id", [
    ("checksum", "checksum_mismatch"), ("procfile", "invalid_slug")])
async def test_a_refused_upload_leaves_nothing_in_s3(s3_api, moto_server, size, damage,
                                                     error_id):
    files = HELLO_SLUG if size == "small" else {**HELLO_SLUG, "data.bin": os.urandom(2 * PART)}
    if damage == "procfile":
        files = {**files, "Procfile": "web python web.py"}
    data = slug_bytes(files)
    status, error, _ = await upload(s3_api, data, declared=b"other" if damage == "checksum"
                                    else None)
    assert (status, error["id"]) == (422, error_id)
    assert moto_server.keys(s3_api.bucket) == []
    assert moto_server.pending_uploads(s3_api.bucket) == []  # the parts sent were aborted
    assert (await s3_api.call("GET", "/apps/hello/releases"))[1] == []


async def test_a_client_that_hangs_up_mid_upload_leaves_no_multipart_upload(s3_api,
                                                                              moto_server):
    data = big_slug()
    host, port = s3_api.url.removeprefix("http://").split(":")
    head = (f"POST /apps/hello/slugs HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {s3_api.tokens[Role.USER]}\r\n"
            f"X-Slug-Checksum: {checksum(data)}\r\nContent-Length: {len(data)}\r\n\r\n")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + data[:PART + 4096])  # one whole part and a bit
    await writer.drain()
    for _ in range(500):  # the server sends the first part while waiting for the rest
        if await asyncio.to_thread(moto_server.pending_uploads, s3_api.bucket):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the first part never reached S3")
    writer.transport.abort()  # the client goes away without the rest
    for _ in range(500):
        if not await asyncio.to_thread(moto_server.pending_uploads, s3_api.bucket):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the multipart upload of an upload cut short was never aborted")
    assert moto_server.keys(s3_api.bucket) == []
    assert (await s3_api.call("GET", "/apps/hello/releases"))[1] == []


async def test_a_dyno_manager_downloads_from_a_presigned_url_and_verifies_it(
        s3_api, moto_server, tmp_path):
    data = big_slug()
    status, slug, _ = await upload(s3_api, data)
    await assign_to_vm1(s3_api, slug["id"])
    # The control plane hands out a redirect to S3; the agent's token never goes there.
    async with s3_api.client.get(f"/slugs/{slug['id']}/download", allow_redirects=False,
                                 headers=s3_api.auth(Role.DYNOMGR)) as response:
        assert response.status == 307
        assert response.headers["Location"].startswith(f"{moto_server.url}/{s3_api.bucket}/"
                                                       f"slugs/{slug['id']}.tar.gz?")
        assert "X-Amz-Signature=" in response.headers["Location"]
    sha256 = hashlib.sha256(data).hexdigest()
    cache, fetched = fetch_as_agent(s3_api, slug["id"], sha256, tmp_path / "cache")
    try:
        assert (await fetched).read_bytes() == data
    finally:
        await cache.aclose()


async def test_a_tampered_object_in_s3_is_an_r17_and_never_cached(s3_api, moto_server,
                                                                   tmp_path):
    data = slug_bytes(HELLO_SLUG)
    status, slug, _ = await upload(s3_api, data)
    await assign_to_vm1(s3_api, slug["id"])
    moto_server.client().put_object(Bucket=s3_api.bucket, Key=f"slugs/{slug['id']}.tar.gz",
                                    Body=slug_bytes({**HELLO_SLUG, "web.py": "print('evil')"}))
    cache, fetched = fetch_as_agent(s3_api, slug["id"], hashlib.sha256(data).hexdigest(),
                                    tmp_path / "cache")
    try:
        with pytest.raises(SlugError, match=r"has SHA-256 [0-9a-f]{12}…, expected") as caught:
            await fetched
    finally:
        await cache.aclose()
    assert caught.value.code == "R17"
    assert list((tmp_path / "cache").iterdir()) == []


async def test_destroying_an_app_deletes_its_slugs_from_s3(s3_api, moto_server):
    for _ in range(2):
        assert (await upload(s3_api, slug_bytes(HELLO_SLUG)))[0] == 201
    assert len(moto_server.keys(s3_api.bucket)) == 2
    assert (await s3_api.call("DELETE", "/apps/hello"))[0] == 200
    assert moto_server.keys(s3_api.bucket) == []


def control(tmp_path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    with socket.socket() as sock:  # a free port, only to fail after the slug store check
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.run(
        dynomesh_argv("control", "--home", str(tmp_path / "home"), "--listen",
                      f"127.0.0.1:{port}", *args),
        env=dynomesh_env(**env), capture_output=True, text=True, timeout=60)


def test_a_missing_bucket_stops_the_control_plane_with_what_to_do(moto_server, tmp_path):
    done = control(tmp_path, "--slug-store", "s3://no-such-bucket/slugs",
                   "--slug-store-endpoint", moto_server.url, env=AWS_ENV)
    assert done.returncode == 1, done.stderr
    assert ("the bucket 'no-such-bucket' does not exist: create it (aws s3 mb "
            "s3://no-such-bucket)") in done.stderr
    assert "Traceback" not in done.stderr


def test_no_aws_credentials_stops_the_control_plane_with_what_to_do(moto_server, tmp_path):
    bucket = moto_server.bucket()
    env = {**NO_CREDENTIALS_ENV, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    done = control(tmp_path, "--slug-store", f"s3://{bucket}/slugs",
                   "--slug-store-endpoint", moto_server.url, env=env)
    assert done.returncode == 1, done.stderr
    assert f"--slug-store s3://{bucket}/slugs: no AWS credentials found" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def strict_moto():
    from tests.motoserver import serve_checking_credentials

    with serve_checking_credentials() as server:
        yield server


def test_refused_credentials_stop_the_control_plane_with_what_to_do(strict_moto, tmp_path):
    bucket = strict_moto.bucket()
    done = control(tmp_path, "--slug-store", f"s3://{bucket}/slugs",
                   "--slug-store-endpoint", strict_moto.url, env=AWS_ENV)
    assert done.returncode == 1, done.stderr
    assert (f"--slug-store s3://{bucket}/slugs: access to the bucket {bucket!r} was refused "
            "(403): check the AWS credentials") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("size", ["small", "multipart"])
async def test_an_upload_s3_refuses_is_a_503_and_records_nothing(api_factory, aws_env, size):
    from tests.motoserver import serve_in_a_process

    # moto checks credentials from its 4th request on: making the bucket, the node's HeadBucket
    # and its look for stale uploads pass; the upload's first request is refused.
    with serve_in_a_process(INITIAL_NO_AUTH_ACTION_COUNT="3") as moto:
        bucket = moto.bucket()
        api = await api_factory(slug_store=f"s3://{bucket}/slugs",
                                slug_store_endpoint=moto.url, slug_part_size=PART)
        await api.call("POST", "/apps", json={"name": "hello"})
        data = slug_bytes(HELLO_SLUG) if size == "small" else big_slug()
        status, error, _ = await upload(api, data)
    assert (status, error["id"]) == (503, "slug_store_unavailable")
    assert f"the slug could not be stored in s3://{bucket}/slugs" in error["message"]
    assert "deploy again" in error["message"]
    assert (await api.call("GET", "/apps/hello/releases"))[1] == []
    assert list((api.config.slug_dir / ".incoming").iterdir()) == []


@pytest.mark.parametrize("flags, message", [
    (["--slug-store", "/srv/slugs"], "--slug-store must be s3://BUCKET/PREFIX"),
    (["--slug-store", "s3://Bad_Bucket/x"], "is not an S3 bucket name"),
    (["--slug-store", "s3://ok-bucket/x", "--slug-part-size", "4"], "at least 5 MiB"),
    (["--slug-store", "s3://ok-bucket/x", "--slug-store-endpoint", "127.0.0.1:9000"],
     "--slug-store-endpoint must be an http:// or https:// URL"),
])
def test_bad_slug_store_flags_are_refused_before_anything_starts(tmp_path, flags, message):
    done = control(tmp_path, *flags, env=AWS_ENV)
    assert done.returncode == 2 and message in done.stderr, done.stderr


async def test_a_node_that_starts_aborts_old_uploads_under_its_prefix_only(
        moto_server, aws_env, tmp_path):
    """moto dates every multipart upload 2010-11-10, so all are old here; which age counts is
    test_s3slugs_units.py's."""
    from controlplane.s3slugs import S3Location, S3Settings, S3SlugStore

    bucket = moto_server.bucket()
    moto_server.client().create_multipart_upload(Bucket=bucket, Key="slugs/crashed.tar.gz")
    moto_server.client().create_multipart_upload(Bucket=bucket, Key="elsewhere/x.tar.gz")
    store = S3SlugStore(S3Settings(S3Location(bucket, "slugs"), moto_server.url),
                        tmp_path / "spool")
    await store.start()
    await store.close()
    assert moto_server.pending_uploads(bucket) == ["elsewhere/x.tar.gz"]

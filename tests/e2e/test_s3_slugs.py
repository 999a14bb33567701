"""`dynomesh up --slug-store s3://…` against moto on loopback: slugs go to S3, the dyno manager
downloads them from presigned URLs, verifies them and runs the dynos; a tampered object is an
R17 and its dyno never starts; a restarted control plane still has every slug."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.request

import pytest

from controlplane.cli.pack import pack
from tests.e2e.harness import Api, Cli, RouterClient, Up, copy_example, poll, shared_tmpdir
from tests.motoserver import AWS_ENV

pytestmark = pytest.mark.timeout(300)

PREFIX = "platform/slugs"


@pytest.fixture(scope="module")
def s3_platform(moto_server):
    bucket = moto_server.bucket()
    home = shared_tmpdir("dynomesh-e2e-s3-")
    up = Up(home, "--slug-store", f"s3://{bucket}/{PREFIX}", "--slug-store-endpoint",
            moto_server.url, env=AWS_ENV)
    try:
        up.wait_ready()
        yield up, bucket, Cli(home), Api(home), RouterClient(up.http_port)
    finally:
        up.kill()
        shutil.rmtree(home, ignore_errors=True)


def upload_only(api: Api, app: str, directory) -> dict:
    """Upload a directory's slug without releasing it (what `deploy` does first)."""
    slug = pack(directory)
    try:
        request = urllib.request.Request(
            f"{api.url}/apps/{app}/slugs", data=slug.path.read_bytes(), method="POST",
            headers={"Authorization": f"Bearer {api.token}",
                     "X-Slug-Checksum": f"sha256:{slug.sha256}",
                     "Content-Type": "application/gzip"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    finally:
        slug.path.unlink(missing_ok=True)


def release(api: Api, app: str, slug_id: str) -> None:
    request = urllib.request.Request(
        f"{api.url}/apps/{app}/releases", data=json.dumps({"slug": slug_id}).encode(),
        method="POST", headers={"Authorization": f"Bearer {api.token}",
                                "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def answers(router: RouterClient, app: str) -> str:
    return poll(lambda: (r := router.get(app)).status == 200 and r.text,
                f"{app} to answer through the router", timeout=90)


def test_a_multipart_slug_in_s3_is_downloaded_verified_and_run(s3_platform, moto_server,
                                                                tmp_path):
    up, bucket, cli, api, router = s3_platform
    cli.ok("apps:create", "s3-big", "--no-link")
    source = copy_example("hello", tmp_path)
    (source / "ballast.bin").write_bytes(os.urandom(9 * 2**20))  # over one 8 MiB part
    out = cli.ok("deploy", str(source), "--app", "s3-big")
    assert "Released v1" in out
    assert "from web.1" in answers(router, "s3-big")
    (released,) = api.get("/apps/s3-big/releases")
    key = f"{PREFIX}/{released['slug']['id']}.tar.gz"
    assert key in moto_server.keys(bucket)
    etag = moto_server.client().head_object(Bucket=bucket, Key=key)["ETag"]
    assert etag.strip('"').endswith("-2")  # went up as two parts
    assert list((up.home / "slugs").glob("*.tar.gz")) == []  # kept in S3 only
    cli.ok("apps:destroy", "--app", "s3-big", "--confirm", "s3-big")


def test_a_tampered_slug_is_an_r17_and_its_dyno_never_starts(s3_platform, moto_server,
                                                              tmp_path):
    up, bucket, cli, api, router = s3_platform
    cli.ok("apps:create", "s3-tampered", "--no-link")
    slug = upload_only(api, "s3-tampered", copy_example("hello", tmp_path))
    evil = tmp_path / "evil"
    shutil.copytree(tmp_path / "hello", evil)
    (evil / "web.py").write_text("raise SystemExit('this code was never deployed')\n")
    packed = pack(evil)
    moto_server.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{slug['id']}.tar.gz",
                                    Body=packed.path.read_bytes())
    packed.path.unlink()
    mark = up.mark()
    release(api, "s3-tampered", slug["id"])
    up.wait_for(r"s3-tampered heroku\[web\.1\]: Error R17 \(Checksum error\) -> slug \S+ has "
                r"SHA-256 [0-9a-f]{12}…, expected " + slug["checksum"][7:19], after=mark)
    # Retried with the crash back-off (S3 may have been mid-overwrite), and never up.
    poll(lambda: [d["state"] for d in api.get("/apps/s3-tampered/dynos")] == ["crashed"],
         "web.1 crashed")
    assert not up.matches(r"this code was never deployed", after=mark)
    cli.ok("apps:destroy", "--app", "s3-tampered", "--confirm", "s3-tampered")


def test_a_restarted_control_plane_serves_the_slugs_it_had(s3_platform, tmp_path):
    up, bucket, cli, api, router = s3_platform
    cli.ok("apps:create", "s3-restart", "--no-link")
    slug = upload_only(api, "s3-restart", copy_example("hello", tmp_path))
    mark = up.mark()
    os.kill(up.pids()["control"], signal.SIGKILL)
    up.wait_for(r"up +\| started control again", after=mark)
    poll(lambda: api.try_dynos("s3-restart") is not None, "the control plane to answer again")
    release(api, "s3-restart", slug["id"])  # the agent fetches it only now
    assert "from web.1" in answers(router, "s3-restart")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", slug["checksum"])
    cli.ok("apps:destroy", "--app", "s3-restart", "--confirm", "s3-restart")

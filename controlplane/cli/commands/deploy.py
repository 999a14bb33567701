"""deploy, releases, releases:info, rollback."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from controlplane.cli.commands.apps import app_path
from controlplane.cli.context import link
from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.commands.builds import follow_build
from controlplane.cli.output import Progress, emit_json, human_size, table
from controlplane.cli.pack import NotDeployable, check_procfile, pack
from controlplane.cli.registry import command, runs

UPLOAD_CHUNK = 256 * 1024
PHASE_TAIL_LINES = 10  # of a failed release phase's output, under `releases`
RELEASE_WAIT = 30
# The release phase's own time limit (an hour) and some: past it, the phase never started.
GIVE_UP_AFTER = 3600 + 300  # seconds each wait for a release phase holds the request


@command("deploy", "upload a directory's source; the platform builds it into a slug and "
         "releases it",
         example="dynomesh deploy examples/hello --app hello\n"
                 "dynomesh deploy            # this directory, to its linked app", json=True)
def deploy(parser):
    parser.add_argument("directory", nargs="?", default=".",
                        help="the app's directory, with a Procfile (default: this directory); "
                             "a requirements.txt or pyproject.toml is installed into a "
                             "virtualenv by the Python buildpack")
    parser.add_argument("--description", help="the release's description "
                        "(default: 'Deploy <checksum>')")


async def _chunks(path: Path, progress: Progress):
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(UPLOAD_CHUNK), b""):
            yield block
            progress.advance(len(block))


@runs(deploy)
async def _(args, session):
    directory = (session.env.cwd / args.directory).resolve()
    name = session.app(start=directory)
    # What needs no upload first: the Procfile parses, the app exists and this token may
    # deploy to it (401/403/404 here, before a large upload).
    if not directory.is_dir():
        raise usage(f"{directory} is not a directory: deploy a directory with a Procfile")
    try:
        check_procfile(directory)
    except NotDeployable as exc:
        raise usage(str(exc)) from exc
    await session.api.get(app_path(name))
    try:
        source = pack(directory)
    except NotDeployable as exc:
        raise usage(str(exc)) from exc
    try:
        print(f"Packed {directory}: {source.files} files, {human_size(source.size)}, "
              f"process types {', '.join(source.process_types)}", file=sys.stderr)
        progress = Progress("Uploading source", source.size)
        query = "?" + urlencode({"description": args.description}) if args.description else ""
        build, _ = await session.api.call(
            "POST", app_path(name) + "/builds" + query, data=_chunks(source.path, progress),
            headers={"X-Slug-Checksum": f"sha256:{source.sha256}",
                     "Content-Type": "application/gzip", "Content-Length": str(source.size)})
        progress.finish()
    finally:
        source.path.unlink(missing_ok=True)
    if build["source_checksum"] != f"sha256:{source.sha256}":
        raise CliError(Exit.REFUSED, "the control plane stored a different checksum than the "
                                     "source's; deploy again")
    print(f"Verified sha256:{source.sha256[:12]}... on the control plane; building "
          f"(build {build['number']})", file=sys.stderr)
    link(directory, name, home=session.env.home)
    build = await follow_build(session.api, name, build, sys.stderr if args.json else sys.stdout)
    if build["status"] != "succeeded":
        raise CliError(Exit.REFUSED, f"Build {build['number']} of {name} failed: "
                                     f"{build['reason']}")
    release = await session.api.get(
        f"{app_path(name)}/releases/{build['release']['version']}")
    if release["status"] == "pending" and release.get("release_phase"):
        release = await wait_for_release_phase(session, name, release, quiet=args.json)
    if args.json:
        emit_json(release)
    else:
        print(f"Released v{release['version']} of {name} ({release['status']}): "
              f"{release['description']}")
    _refuse_failed(release)


async def settle_release_phase(session, name: str, release: dict, *, quiet: bool) -> dict:
    """Wait for `release`'s release phase if it has one pending (a deploy, a rollback or a
    config change made it); CliError if it failed."""
    if release["status"] == "pending" and release.get("release_phase"):
        release = await wait_for_release_phase(session, name, release, quiet=quiet)
    _refuse_failed(release)
    return release


def _refuse_failed(release: dict) -> None:
    if release["status"] == "failed":
        raise CliError(Exit.REFUSED, f"v{release['version']} failed its release phase, so it "
                       "did not go live; the previous release keeps running. Its output is "
                       f"above (`dynomesh releases:info v{release['version']}` shows it again)")


async def wait_for_release_phase(session, name: str, release: dict, *, quiet: bool) -> dict:
    """Wait for a release's release phase to end, then show its output (stderr)."""
    command = release["process_types"].get("release", "")
    if not quiet:
        print(f"Running release command `{command}` for v{release['version']}...",
              file=sys.stderr, flush=True)
    path = f"{app_path(name)}/releases/{release['version']}?wait={RELEASE_WAIT}"
    deadline = time.monotonic() + GIVE_UP_AFTER
    while release["status"] == "pending":  # each wait is bounded; the phase's time limit ends it
        if time.monotonic() > deadline:
            raise CliError(Exit.REFUSED, f"v{release['version']} is still pending after "
                           f"{GIVE_UP_AFTER} s (its release phase has not run: `dynomesh ps` "
                           "shows whether a VM has room); `dynomesh releases` shows when it "
                           "settles")
        release = await session.api.get(path)
    if not quiet and release.get("phase_output"):
        for line in release["phase_output"].splitlines():
            print(f"  {line}", file=sys.stderr)
    return release


@command("releases", "list an app's releases, newest first",
         example="dynomesh releases --app hello\ndynomesh releases -n 5 --json", json=True)
def releases(parser):
    parser.add_argument("-n", "--num", type=int, default=15, metavar="N",
                        help="how many (default 15)")


@runs(releases)
async def _(args, session):
    if not 1 <= args.num <= 1000:
        raise usage("--num must be between 1 and 1000")
    name = session.app()
    listed = await session.api.get(f"{app_path(name)}/releases?limit={args.num}")
    if args.json:
        return emit_json(listed)
    if not listed:
        print(f"{name} has no releases yet: `dynomesh deploy` makes the first one")
        return
    table(["VERSION", "STATUS", "DESCRIPTION", "CREATED"],
          [[f"v{r['version']}" + (" (current)" if r["current"] else ""), r["status"],
            r["description"], r["created_at"]] for r in listed])
    failed = [r for r in listed if r["status"] == "failed" and r.get("phase_output")]
    for r in failed:
        print(f"\nv{r['version']} failed its release phase; the end of its output:")
        for line in r["phase_output"].splitlines()[-PHASE_TAIL_LINES:]:
            print(f"  {line}")


@command("releases:info", "show one release",
         example="dynomesh releases:info v2 --app hello", json=True)
def releases_info(parser):
    parser.add_argument("release", help="version (v2 or 2) or release id")


@runs(releases_info)
async def _(args, session):
    release = await session.api.get(f"{app_path(session.app())}/releases/{args.release}")
    if args.json:
        return emit_json(release)
    for label, value in (("Version", f"v{release['version']}"), ("Status", release["status"]),
                         ("Current", "yes" if release["current"] else "no"),
                         ("Description", release["description"]),
                         ("Slug", (release["slug"] or {}).get("id", "none")),
                         ("Process types", ", ".join(release["process_types"]) or "none"),
                         ("Created", release["created_at"])):
        print(f"{label + ':':<15}{value}")
    if release.get("phase_output"):
        print("Release phase:")
        for line in release["phase_output"].splitlines():
            print(f"  {line}")


@command("rollback", "release an earlier release's slug and config vars again",
         example="dynomesh rollback v1 --app hello\n"
                 "dynomesh rollback          # to the release before the current one", json=True)
def rollback(parser):
    parser.add_argument("release", nargs="?", help="version (v1 or 1) or release id "
                        "(default: the one before the current release)")


@runs(rollback)
async def _(args, session):
    name = session.app()
    target = args.release
    if target is None:
        listed = await session.api.get(f"{app_path(name)}/releases?limit=1000")
        current = next((r for r in listed if r["current"]), None)
        earlier = [r for r in listed if current and r["version"] < current["version"]
                   and r["status"] == "succeeded"
                   # once the app runs code, a release without a slug would take it away
                   and (r["slug"] is not None or current["slug"] is None)]
        if not earlier:
            kind = "release with code" if current and current["slug"] else "release"
            raise CliError(Exit.NOT_FOUND, f"{name} has no earlier {kind} to roll back to")
        target = str(earlier[0]["version"])
    release, _ = await session.api.call("POST", app_path(name) + "/releases",
                                        json_body={"release": target.lstrip("vV")
                                                   if target.lstrip("vV").isdigit() else target})
    if args.json:
        return emit_json(release)
    print(f"Rolled back {name}: {release['description']}, now v{release['version']}")
    await settle_release_phase(session, name, release, quiet=False)

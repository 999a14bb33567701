"""The router's and the dyno manager's tokens, made once through the API and kept in the home.

`dynomesh control` writes the CLI's credentials (a `user` token) to `$DYNOMESH_HOME/
credentials.json` on its first start. With them, `dynomesh up` creates a `router` token and a
`dynomgr` token bound to this machine's VM id (`POST /tokens`, as `dynomesh tokens:create`
would) and keeps each in a file of its own (mode 0600), which the children read with
`--token-file`. On later starts a kept token is checked (`GET /account`) and used again; one the
control plane no longer knows (a new database) is replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CREDENTIALS = "credentials.json"


class TokenError(Exception):
    """The tokens cannot be made; the message says why and what to do."""


def read_credentials(home: Path) -> tuple[str, str]:
    """(api, user token) from the credentials `dynomesh control` wrote."""
    path = home / CREDENTIALS
    try:
        data = json.loads(path.read_text())
        return data["api"], data["token"]
    except FileNotFoundError:
        raise TokenError(f"{path} is missing: the control plane writes it on start") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TokenError(f"{path} cannot be read ({error}); remove it and start again: the "
                         "control plane writes a new one") from None


async def ensure_token(session, api: str, user_token: str, path: Path, role: str,
                       vm_id: str | None = None) -> bool:
    """Make `path` hold a working token of `role`; True when a new one was created."""
    kept = _read(path)
    if kept is not None:
        status, body = await _request(session, "GET", f"{api}/account", kept)
        if status == 200 and body.get("role") == role and body.get("vm_id") == vm_id:
            return False
        if status != 401 and status != 200:
            raise TokenError(f"checking the {role} token in {path}: HTTP {status}: "
                             f"{body.get('message', body)}")
    request = {"role": role, "description": f"{role} run by dynomesh up"}
    if vm_id is not None:
        request["vm_id"] = vm_id
    status, body = await _request(session, "POST", f"{api}/tokens", user_token, request)
    if status != 201 or not isinstance(body.get("token"), str):
        raise TokenError(f"creating a {role} token: HTTP {status}: {body.get('message', body)}")
    _write(path, body["token"])
    return True


def _read(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TokenError(f"cannot read {path}: {error}") from None
    return token or None


def _write(path: Path, token: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


async def _request(session, method: str, url: str, token: str,
                   body: dict | None = None) -> tuple[int, dict]:
    import aiohttp

    try:
        async with session.request(method, url, json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as response:
            text = await response.text()
    except (aiohttp.ClientError, OSError) as error:
        raise TokenError(f"{method} {url}: {error}") from None
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {"message": text[:200]}
    return response.status, answer if isinstance(answer, dict) else {"message": str(answer)}

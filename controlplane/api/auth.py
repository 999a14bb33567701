"""Bearer tokens and roles on every endpoint.

Each handler declares who may call it with `@allow(Role.USER, ...)` or `@public`; the
middleware refuses a handler that declares neither, so a new endpoint cannot ship unprotected
by accident. No or unknown token: 401 with `WWW-Authenticate: Bearer` (RFC 6750 section 3);
a valid token of the wrong role: 403.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api.errors import ApiError
from controlplane.store import Store
from controlplane.store.models import Role, Token

TOKEN_KEY = web.RequestKey("token", Token)
_ROLES_ATTRIBUTE = "__dynomesh_roles__"
_PUBLIC = frozenset({"public"})


# A token description this short names who acts (`ops@example.com`, `deploy-bot`); a longer
# one is a note about the token, and the token's id says who instead.
ACTOR_DESCRIPTION_MAX = 40


def actor(request: web.Request) -> str:
    """Who made a change, for app log lines (`Scale to web=3 by <actor>`)."""
    token = request[TOKEN_KEY]
    if token.description and len(token.description) <= ACTOR_DESCRIPTION_MAX:
        return token.description
    return f"{token.role.value} token {token.id[:8]}"


def allow(*roles: Role):
    def mark(handler):
        setattr(handler, _ROLES_ATTRIBUTE, frozenset(roles))
        return handler
    return mark


def public(handler):
    """No token needed (health checks only)."""
    setattr(handler, _ROLES_ATTRIBUTE, _PUBLIC)
    return handler


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="dynomesh"'})


def auth_middleware(store: Store):
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        info = request.match_info
        if info.http_exception is not None:  # no such route: let the error say so
            return await handler(request)
        target = info.handler
        roles = getattr(target, _ROLES_ATTRIBUTE, None)
        if roles is None:
            raise RuntimeError(f"{request.path}: handler {target.__name__} declares no roles")
        if roles is _PUBLIC:
            return await handler(request)
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("this endpoint needs a token: send 'Authorization: Bearer "
                                "<token>' (the CLI reads it from DYNOMESH_TOKEN or "
                                "$DYNOMESH_HOME/credentials.json)")
        token = await store.tokens.authenticate(secret.strip())
        if token is None:
            raise _unauthorized("the token is not valid (revoked, or for another control plane): "
                                "create one with `dynomesh tokens:create`")
        if token.role not in roles:
            allowed = " or ".join(sorted(r.value for r in roles))
            raise ApiError(403, "forbidden", f"a {token.role.value} token cannot do this; it "
                                             f"needs a {allowed} token")
        request[TOKEN_KEY] = token
        return await handler(request)
    return middleware

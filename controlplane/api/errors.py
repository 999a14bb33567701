"""JSON errors, Heroku style: `{"id": "not_found", "message": "..."}` with the matching status.

This is the one place errors become HTTP: typed store errors, add-on errors, request-body
problems and aiohttp's own HTTP exceptions all leave through `error_middleware`.
"""

from __future__ import annotations

import logging

from aiohttp import web

from controlplane.addons import errors as addon_errors
from controlplane.certs.service import NoCertificateKey
from controlplane.certs.validate import CertificateInvalid
from controlplane.store import errors

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status and machine-readable id; the message is for the user."""

    def __init__(self, status: int, error_id: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_params", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


_STORE_ERRORS: tuple[tuple[type[errors.StoreError], int, str], ...] = (
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.Invalid, 422, "invalid_params"),
    (errors.HistoryExpired, 410, "history_expired"),
    (errors.Busy, 503, "busy"),
    (errors.Unavailable, 503, "store_unavailable"),
)

# A platform without a server for a kind, or one that cannot reach it, is not the client's
# mistake, but it is not a control plane failure either: 503 says "try later, or configure".
_ADDON_ERRORS: tuple[tuple[type[addon_errors.AddonError], int, str], ...] = (
    (addon_errors.UnknownKind, 422, "unknown_addon_kind"),
    (addon_errors.NotConfigured, 422, "addons_not_configured"),
    (addon_errors.ProviderUnavailable, 503, "addon_server_unavailable"),
    (addon_errors.UnsafeServer, 503, "addon_server_unsafe"),
    (addon_errors.Busy, 409, "addon_busy"),
    (addon_errors.ResourceExists, 409, "addon_resource_exists"),
    (addon_errors.Elsewhere, 409, "addon_on_other_server"),
    (addon_errors.ProviderFailed, 502, "addon_server_refused"),
)

# A certificate refused names what is wrong with it; a control plane without a certificate key
# is the operator's to configure (503, as an add-on server that is not configured).
_CERT_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (CertificateInvalid, 422, "invalid_certificate"),
    (NoCertificateKey, 503, "certificates_not_configured"),
)

_HTTP_IDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
             405: "method_not_allowed", 409: "conflict", 413: "request_too_large",
             415: "unsupported_media_type", 422: "invalid_params"}


def _translate(exc: Exception, table, retry_after: str) -> ApiError:
    for kind, status, error_id in table:
        if isinstance(exc, kind):
            headers = {"Retry-After": retry_after} if status == 503 else None
            return ApiError(status, error_id, str(exc), headers)
    return ApiError(500, "internal_error", str(exc))


def from_store_error(exc: errors.StoreError) -> ApiError:
    return _translate(exc, _STORE_ERRORS, "1")


def from_addon_error(exc: addon_errors.AddonError) -> ApiError:
    # an add-on server that is down takes longer to come back than a busy store
    return _translate(exc, _ADDON_ERRORS, "5")


def render(error: ApiError) -> web.Response:
    return web.json_response({"id": error.error_id, "message": error.message},
                             status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return render(exc)
    except (CertificateInvalid, NoCertificateKey) as exc:
        return render(_translate(exc, _CERT_ERRORS, "60"))
    except (errors.StoreError, addon_errors.AddonError) as exc:
        store = isinstance(exc, errors.StoreError)
        error = from_store_error(exc) if store else from_addon_error(exc)
        if error.status >= 500:
            log.warning("api: %s %s: %s error: %s", request.method, request.path,
                        "store" if store else "add-on", exc)
        return render(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        message = {404: f"no such endpoint: {request.method} {request.path} (see docs/api.md)",
                   405: f"{request.method} is not allowed on {request.path}",
                   413: "the request body is too large"}.get(exc.status, exc.reason)
        return render(ApiError(exc.status, _HTTP_IDS.get(exc.status, "error"), message))
    except Exception:
        log.exception("api: %s %s failed", request.method, request.path)
        return render(ApiError(500, "internal_error",
                               "the control plane failed on this request; see its log"))

"""The responses the router makes itself: Heroku's H-codes, each with a small HTML page.

Each page is a complete HTTP/1.1 response precomputed at import (no per-request formatting),
with `Connection: close` so that a client never reuses a connection the router gave up on.
The codes, descriptions and statuses are Heroku's (devcenter "Heroku Error Codes"); H80 and H81
are logged `at=info` as Heroku does, since they are states of the app, not failures.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RouterError:
    code: str | None  # "H10"; None for a plain HTTP answer such as 404 "no such app"
    status: int
    desc: str  # logged as desc="..."
    title: str  # the page's heading
    advice: str  # one sentence for whoever sees the page
    level: str = "error"  # logged as at=...
    response: bytes = field(init=False, repr=False)  # full response with body
    head_response: bytes = field(init=False, repr=False)  # the same for HEAD (no body)

    def __post_init__(self) -> None:
        body = _page(self).encode("utf-8")
        head = (
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-cache, no-store\r\n"
            "Connection: close\r\n"
            "Via: 1.1 dynomesh\r\n"
            "\r\n"
        ).encode("ascii")
        object.__setattr__(self, "response", head + body)
        object.__setattr__(self, "head_response", head)

    @property
    def body_length(self) -> int:
        return len(self.response) - len(self.head_response)


_REASONS = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
            413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed", 499: "Client Closed Request",
            501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


class RequestRejected(Exception):
    """The client's request breaks a rule (RFC 9112, a limit): the router answers `error`.

    Raised by the sans-IO request checks; the client connection turns it into the page.
    """

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.desc)
        self.error = error


class ResponseRejected(Exception):
    """The dyno's response breaks a rule or a limit: the router answers `error` (H17, H25)."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.desc)
        self.error = error


def _page(error: RouterError) -> str:
    code = f" <code>{error.code}</code>" if error.code else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(error.title)}</title></head>\n"
        f"<body><h1>{html.escape(error.title)}</h1>\n"
        f"<p>{html.escape(error.advice)}{code}</p></body></html>\n"
    )


APP_CRASHED = RouterError(
    "H10", 503, "App crashed", "Application error",
    "The app's web dynos have crashed, so this page could not be served. Try again shortly.")
NO_WEB_DYNOS = RouterError(
    "H14", 503, "No web dynos running", "Application error",
    "The app has no web dynos running, so this page could not be served.")
BOOT_TIMEOUT = RouterError(
    "H20", 503, "App boot timeout", "Application error",
    "The app did not start in time to serve this page. Try again shortly.")
CONNECTION_REFUSED = RouterError(
    "H21", 503, "Backend connection refused", "Application error",
    "None of the app's web dynos accepted a connection. Try again shortly.")
CONNECT_TIMEOUT = RouterError(
    "H19", 503, "Backend connection timeout", "Application error",
    "None of the app's web dynos accepted a connection in time. Try again shortly.")
BACKLOG_TOO_DEEP = RouterError(
    "H11", 503, "Backlog too deep", "Application error",
    "The app has too many requests in progress to take this one. Try again shortly.")
REQUEST_TIMEOUT = RouterError(
    "H12", 503, "Request timeout", "Application error",
    "The app did not start its response in time.")
CLOSED_WITHOUT_RESPONSE = RouterError(
    "H13", 503, "Connection closed without response", "Application error",
    "The app closed the connection without answering.")
# Heroku's H18: the dyno closed the connection mid-response; no page can be sent any more.
RESPONSE_INTERRUPTED = RouterError(
    "H18", 503, "Server Request Interrupted", "Application error",
    "The app closed the connection in the middle of its response.")
# H15: nothing came from the dyno for the idle timeout (before the response, a page;
# mid-response, the client connection is cut).
DYNO_IDLE = RouterError(
    "H15", 503, "Idle connection", "Application error",
    "The app stopped sending or receiving data.")
BAD_RESPONSE = RouterError(
    "H17", 502, "Poorly formatted HTTP response", "Application error",
    "The app sent a response the router could not parse.")
RESPONSE_TOO_LARGE = RouterError(
    "H25", 502, "HTTP Restriction", "Application error",
    "The app sent a status line or header larger than the router accepts.")
# Heroku's H25 ("HTTP Restriction") is its code for a request or response beyond a routing
# limit; here also for a request body over the app's maximum (RFC 9110 §15.5.14: 413).
BODY_TOO_LARGE = RouterError(
    "H25", 413, "Request body too large", "Request body too large",
    "The request's body is larger than this app accepts.")
MAINTENANCE = RouterError(
    "H80", 503, "Maintenance mode", "Down for maintenance",
    "This app is undergoing maintenance. Please check back soon.", level="info")
BLANK_APP = RouterError(
    "H81", 502, "Blank app", "Nothing deployed yet",
    "This app exists but has no code deployed yet.", level="info")
NO_SUCH_APP = RouterError(
    None, 404, "No such app", "No such app",
    "There is no app at this address. Check the host name.", level="info")
BAD_REQUEST = RouterError(
    "H26", 400, "Request Error", "Bad request",
    "The router could not parse this request.")
# The requests the router refuses (RFC 9112 and its limits), each logged H26 with its reason.
REQUEST_LINE_TOO_LONG = RouterError(
    "H26", 414, "Request line too long", "Request line too long",
    "The request line (method, target and version) is longer than the router accepts.")
HEADER_TOO_LONG = RouterError(
    "H26", 400, "Header line too long", "Bad request",
    "A header line or header name is longer than the router accepts.")
TOO_MANY_HEADERS = RouterError(
    "H26", 400, "Too many headers", "Bad request",
    "The request has more header fields than the router accepts.")
BAD_HOST = RouterError(
    "H26", 400, "Bad Host header", "Bad request",
    "The request needs exactly one Host header naming a host (RFC 9112 §3.2).")
BAD_REQUEST_LINE = RouterError(
    "H26", 400, "Bad request line", "Bad request",
    "The request line must be a method, a target and a version, each after one space.")
BAD_TARGET = RouterError(
    "H26", 400, "Bad request target", "Bad request",
    "The request target must be a path, an absolute http(s) URL, or * for OPTIONS.")
CONNECT_METHOD = RouterError(
    "H26", 400, "CONNECT not supported", "Bad request",
    "This router does not open tunnels with CONNECT.")
BAD_TRAILERS = RouterError(
    "H26", 400, "Invalid trailers", "Bad request",
    "The request's trailer section carries a field that is not allowed there.")
BAD_FRAMING = RouterError(
    "H26", 400, "Ambiguous message framing", "Bad request",
    "The request's body length cannot be determined reliably (RFC 9112 §6).")
UNSUPPORTED_TRANSFER_CODING = RouterError(
    "H26", 501, "Unsupported transfer coding", "Not implemented",
    "Only the chunked transfer coding is accepted on requests.")
EXPECTATION_FAILED = RouterError(
    "H26", 417, "Expectation failed", "Expectation failed",
    "Only Expect: 100-continue is supported.")
VERSION_NOT_SUPPORTED = RouterError(
    "H26", 505, "HTTP version not supported", "HTTP version not supported",
    "This router speaks HTTP/1.0 and HTTP/1.1.")
BAD_PROXY_HEADER = RouterError(
    "H26", 400, "Bad PROXY protocol header", "Bad request",
    "This listener expects a PROXY protocol header from a load balancer first.")
HEAD_TIMEOUT = RouterError(
    None, 408, "Request header timeout", "Request timeout",
    "The request head did not arrive in time.", level="info")
CLIENT_INTERRUPTED = RouterError(
    "H27", 499, "Client Request Interrupted", "Client request interrupted",
    "The client closed the connection before the response was sent.", level="info")
CLIENT_IDLE = RouterError(
    "H28", 499, "Client Connection Idle", "Client connection idle",
    "The client stopped sending or receiving data.")

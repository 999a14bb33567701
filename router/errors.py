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


_REASONS = {400: "Bad Request", 404: "Not Found", 499: "Client Closed Request",
            502: "Bad Gateway", 503: "Service Unavailable"}


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
CLOSED_WITHOUT_RESPONSE = RouterError(
    "H13", 503, "Connection closed without response", "Application error",
    "The app closed the connection without answering.")
# Heroku's H18: the dyno closed the connection mid-response; no page can be sent any more.
RESPONSE_INTERRUPTED = RouterError(
    "H18", 503, "Server Request Interrupted", "Application error",
    "The app closed the connection in the middle of its response.")
BAD_RESPONSE = RouterError(
    "H17", 502, "Poorly formatted HTTP response", "Application error",
    "The app sent a response the router could not parse.")
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
CLIENT_INTERRUPTED = RouterError(
    "H27", 499, "Client Request Interrupted", "Client request interrupted",
    "The client closed the connection before the response was sent.", level="info")

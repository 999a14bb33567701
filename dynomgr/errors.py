"""Why a dyno could not be launched. Each becomes one line in the dyno's log, then `crashed`."""

from __future__ import annotations


class LaunchError(Exception):
    """A start attempt failed before or while creating the process.

    `permanent` errors cannot go away by retrying the same assignment (the Procfile of this
    release lacks the process type); the dyno stays crashed until its assignment changes.
    Others (a slug server that is down, a full disk) are retried with the restart back-off.
    """

    code: str | None = None

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent

    def log_text(self) -> str:
        if self.code is not None:
            return f"Error {self.code} ({self.title}) -> {self}"
        return f"Error: {self}"

    title = ""


class SlugError(LaunchError):
    """The slug is missing, unreadable, corrupt or not what its SHA-256 says (Heroku's R17)."""

    code = "R17"
    title = "Checksum error"


class ProcessTypeError(LaunchError):
    """The release's Procfile does not say how to run this dyno's process type."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)

"""The certificate loop's configuration, built by `dynomesh control`'s flags (`--acme-*`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.acme.client import PollSettings
from controlplane.acme.policy import RenewalPolicy

# Let's Encrypt's production directory: what Heroku's ACM uses too.
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class AcmeSettings:
    """The certificate loop's configuration (`dynomesh control --acme-*`)."""

    directory_url: str = LETS_ENCRYPT
    ca_file: str | None = None  # trust only this bundle for the CA (None: the system's)
    policy: RenewalPolicy = field(default_factory=RenewalPolicy)
    poll: PollSettings = field(default_factory=PollSettings)
    publish_wait: float = 10.0  # longest wait for routers to be sent a challenge
    per_pass: int = 20  # domains attempted per pass; the rest in the next

    def __post_init__(self) -> None:
        # RFC 8555 §6.1: ACME runs over HTTPS only.
        if not self.directory_url.startswith("https://"):
            raise ValueError(f"--acme-directory must be an https:// URL (RFC 8555 §6.1), got "
                             f"{self.directory_url!r}")
        if self.per_pass < 1:
            raise ValueError("the certificate loop must attempt at least one domain per pass")

"""Automatic certificates: an ACME (RFC 8555) client of our own, and the loop that keeps a
certificate for every custom domain of the apps that ask for one (`certs:auto:enable`).

- jws.py: the account key and JWS signing (RFC 7515/7518/7638), pure;
- protocol.py: key authorizations, CSRs, order/authorization states, problem documents, pure;
- client.py: the HTTP exchange with the CA (directory, nonces, orders, polling), aiohttp;
- issuance.py: one certificate for one domain, from a new order to the PEM chain;
- policy.py: when a domain needs a certificate (renewal 30 days before expiry, retries);
- settings.py: its configuration (the directory URL and CA bundle flags);
- manager.py: the control plane's loop (leader only) that drives the above per domain.
"""

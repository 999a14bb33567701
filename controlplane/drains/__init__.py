"""Log drains: every line of an app's stream, sent on to syslog and HTTPS receivers.

`urls.py` which URLs are drains and how they are shown (masked), `syslog.py` RFC 5424
messages in octet-counted frames, `buffer.py` one drain's bounded buffer and its L10 policy
(all three without I/O), `transport.py` syslog (TCP, TLS) and HTTPS sending, `delivery.py` one
drain's loop, `service.py` a node's leases and deliveries, `metrics.py` `/metrics`.
Storage is `store.drains` (store/drains.py); docs/drains.md describes the behaviour.
"""

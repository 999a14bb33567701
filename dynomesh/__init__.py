"""dynomesh: the package the platform's components share.

The components live beside it (`router/`, `dynomgr/`, `controlplane/`, `onebox/`) and talk to
each other only over HTTP; what they all need lives here once: the `dynomesh` command's
dispatcher (`dynomesh.cli`), Heroku-format log lines (`logline`), the feed client
(`feedclient`), log shipping (`logship`) and small asyncio chores (`tasks`, `backoff`, ...).

Importing this package imports nothing else, so a router node loads only what it uses.
"""

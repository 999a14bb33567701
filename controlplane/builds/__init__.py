"""Builds: a source upload turned into a slug by buildpacks, run as an unprivileged user.

`buildpack.py` the contract (detect / compile / release), `python.py` the Python buildpack,
`relocate.py` what makes its virtualenv run from wherever a dyno unpacks the slug,
`slugpack.py` the slug packed by the build user,
`settings.py` limits and pip options, `shell.py` commands as the build user, `output.py` a build's
lines (live and kept), `runner.py` one build from source to release, `service.py` the node's builds.
"""

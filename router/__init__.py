"""The routing mesh: an asyncio HTTP/1.1 reverse proxy from Host to an app's live dynos."""

from router.compiled import install_twin_finder

# Before anything imports a module that has a compiled build: DYNOMESH_PURE_PYTHON=1 chooses the
# pure-Python twins, and an edited source wins over its out-of-date build (router/compiled.py).
install_twin_finder()

"""The routing mesh: an asyncio HTTP/1.1 reverse proxy from Host to an app's live dynos."""

from router.compiled import use_twins_if_requested

# Before anything imports a module that has a compiled build: DYNOMESH_PURE_PYTHON=1 chooses the
# pure-Python twins (router/compiled.py).
use_twins_if_requested()

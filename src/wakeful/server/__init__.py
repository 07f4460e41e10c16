"""The HTTP/WebSocket API and the web UI's server.

``create_app(runtime, token)`` builds the ASGI app; :class:`WebServer` serves it with
uvicorn in the runtime's event loop; :mod:`wakeful.server.auth` makes and checks the
token.
"""

from wakeful.server.app import create_app
from wakeful.server.auth import Token, load_or_create_token
from wakeful.server.serve import DEFAULT_HOST, DEFAULT_PORT, WebServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Token", "WebServer", "create_app",
           "load_or_create_token"]

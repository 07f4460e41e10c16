"""A2A 1.0: every Wakeful agent (or those listed in ``a2a.expose``) is an A2A agent."""

from wakeful.server.a2a.routes import A2AServer, mount_a2a

__all__ = ["A2AServer", "mount_a2a"]

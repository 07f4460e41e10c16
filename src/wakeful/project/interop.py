"""``wakeful.yaml`` sections for open protocols: A2A (serve and call) and MCP servers.

Kept apart from :mod:`.definitions` so that the interop settings can grow without
touching the core config; :class:`ProjectConfig` only names them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class A2AServerConfig(_Strict):
    """``a2a:``: which agents are A2A agents at ``/a2a/{agent}``, and how callers
    authenticate. ``expose`` None: every agent. ``auth: none`` makes them public, which
    is refused on a non-loopback address unless ``allow_public_network`` is set."""

    expose: list[str] | None = None
    auth: Literal["bearer", "none"] = "bearer"
    allow_public_network: bool = False
    enabled: bool = True


class RemoteAgentConfig(_Strict):
    """``remote_agents:``: an A2A agent elsewhere, addressed as ``a2a:NAME``."""

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(min_length=1, description="the agent's base URL or its card's URL")
    token_env: str | None = Field(default=None, pattern=ENV_PATTERN)
    timeout_s: float = Field(default=300.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _http(self) -> RemoteAgentConfig:
        if not re.match(r"^https?://", self.url):
            raise ValueError(f"remote agent {self.name!r}: url must start with http:// or "
                             f"https://, got {self.url!r}")
        return self


class McpServerConfig(_Strict):
    """``mcp_servers:``: an MCP server whose tools agents may be granted, as
    ``NAME.TOOL``. Either ``command`` (stdio) or ``url`` (streamable HTTP)."""

    name: str = Field(pattern=NAME_PATTERN)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    token_env: str | None = Field(default=None, pattern=ENV_PATTERN)
    timeout_s: float = Field(default=60.0, gt=0)
    # Tool name (or glob) -> the shared resource its calls touch (auto-pause applies).
    resources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give either 'command' (stdio) or "
                             "'url' (streamable HTTP), not both or neither")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError(f"MCP server {self.name!r}: url must start with http:// or "
                             f"https://, got {self.url!r}")
        return self

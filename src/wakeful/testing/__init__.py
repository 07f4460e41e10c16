"""Test helpers that ship with Wakeful: a local model server speaking the real
OpenAI and Anthropic wire protocols (for tests and benchmarks of providers).

Needs the ``dev`` extra (starlette, uvicorn)."""

from wakeful.testing.openai_server import ModelServer
from wakeful.testing.script import FakeToolCall, Received, Reply, tool_steps

__all__ = ["FakeToolCall", "ModelServer", "Received", "Reply", "tool_steps"]

"""A stdio MCP server whose tool asks the client's model (sampling), for test_mcp."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent

server: MCPServer = MCPServer(name="poet", log_level="WARNING")


@server.tool()
async def haiku(topic: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Write a haiku with the client's model."""
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=topic))],
        max_tokens=100, system_prompt="Write a haiku.")
    content = result.content
    return f"poet got: {content.text if isinstance(content, TextContent) else content}"


if __name__ == "__main__":
    import anyio

    anyio.run(server.run_stdio_async)

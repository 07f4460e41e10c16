"""MCP client tools (placeholder, filled in next)."""

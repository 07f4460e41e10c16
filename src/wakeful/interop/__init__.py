"""Open protocols as services: the A2A caller of a task, MCP tools, remote A2A agents."""

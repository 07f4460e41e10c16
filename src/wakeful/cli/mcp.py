"""``wakeful mcp -p DIR``: run the team and serve it as an MCP server over stdio.

This is what a desktop assistant or an IDE launches. The runtime runs in this process
for as long as the client keeps the pipe open; stdout carries MCP messages only, so
logs go to stderr.
"""

import logging
import sys
from pathlib import Path

import structlog
import typer


def register(app: typer.Typer) -> None:
    from wakeful.cli.common import ProjectOption, open_project, run_async

    @app.command()
    def mcp(project: ProjectOption = Path(".")) -> None:
        """Serve the team as an MCP server on stdin/stdout (for MCP clients)."""
        loaded = open_project(project)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                            wrapper_class=structlog.make_filtering_bound_logger(
                                logging.WARNING))

        async def main() -> None:
            from wakeful.runtime.runtime import Runtime
            from wakeful.server.interop import InteropService, with_remote_agents
            from wakeful.server.mcp_server import build_server

            config = loaded.config
            runtime = Runtime.from_project(with_remote_agents(loaded))
            runtime.add_service(InteropService(config.a2a, config.mcp_servers,
                                               config.remote_agents, str(loaded.root),
                                               serve_mcp=False))
            await runtime.start()
            try:
                await build_server(runtime).run_stdio_async()
            finally:
                await runtime.stop()

        run_async(main)

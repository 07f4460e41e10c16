"""The ``wakeful`` command line: this module puts the commands together, in the order
``wakeful --help`` lists them, and is the console-script entry point.

Every command that can fail because of what a person typed or wrote fails with one
clear line on stderr and a non-zero exit; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import contextlib
import sys

import typer

from wakeful.cli.common import app, err, take_store_option
from wakeful.cli.projects import copy_example, write_store_url

__all__ = ["app", "copy_example", "main", "write_store_url"]


def _register_commands() -> None:
    """Add every command to the app; the order here is the order of ``--help``."""
    from wakeful.cli.projects import agents, init, status
    from wakeful.cli.run import demo, run, serve, worker
    from wakeful.cli.tasks import show_task, start_task, tasks

    app.command()(init)
    app.command()(run)
    app.command()(serve)
    app.command()(worker)
    app.command()(demo)
    app.command()(status)
    app.command()(agents)
    app.command()(tasks)
    app.command("task")(show_task)
    app.command("start-task")(start_task)

    # Commands defined beside their features (store.py adds migrate and workers as it
    # is imported, before the registrations below).
    from wakeful.cli.agent_admin import register as register_agent_admin
    from wakeful.cli.approvals import register as register_approvals
    from wakeful.cli.inspect import register as register_inspector
    from wakeful.cli.locks import register as register_resources
    from wakeful.cli.mail import channel_app, mail_app
    from wakeful.cli.mcp import register as register_mcp
    from wakeful.cli.model import register as register_models
    from wakeful.cli.store import register as register_store
    from wakeful.cli.timers import register as register_timers

    register_inspector(app)
    register_approvals(app)
    register_resources(app)
    register_timers(app)
    register_models(app)
    register_mcp(app)
    register_store(app)
    register_agent_admin(app)
    app.add_typer(mail_app, name="mail")
    app.add_typer(channel_app, name="channel")


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        try:
            sys.argv[1:] = take_store_option(sys.argv[1:])
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        app()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            err.print("interrupted")
        sys.exit(130)

"""The ``wakeful`` command: one module per group of commands, sharing
:mod:`wakeful.cli.common`."""

from wakeful.cli.common import app
from wakeful.cli.main import main

__all__ = ["app", "main"]

"""``python -m wakeful`` is the ``wakeful`` command."""

from wakeful.cli import main

main()

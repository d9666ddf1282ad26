"""The ``kres`` command: `kres.cli.parser` (its flags, and `main`) and
`kres.cli.commands` (what each command does)."""

from kres.cli.parser import main

__all__ = ["main"]

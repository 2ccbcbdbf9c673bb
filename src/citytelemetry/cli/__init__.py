"""The ``citytelemetry`` command line: argument parsing and printing for every command, and nothing else.

Library packages never import from here; ``main`` dispatches to one module per command group.
"""

from citytelemetry.cli.main import main

__all__ = ["main"]

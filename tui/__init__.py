"""The Textual TUI of lacrimosa: ``run_tui(console)`` runs it on a started Console.

Importing this package loads Textual; the one-shot CLI must import it only for ``lacrimosa up``.
"""

from .app import LacrimosaApp, run_tui

__all__ = ["LacrimosaApp", "run_tui"]

"""The Textual TUI of lacrimosa: ``run_tui(console)`` runs it on a started Console (``up``);
``LacrimosaApp(remote, attached=True)`` on any other ``ConsoleFacade`` (``lacrimosa tui``).

Importing this package loads Textual; the one-shot CLI must import it only for ``up`` and ``tui``.
"""

from .app import LacrimosaApp, run_tui

__all__ = ["LacrimosaApp", "run_tui"]

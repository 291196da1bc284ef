"""Colours shared by the TUI's widgets.

Explicit RGB rather than ANSI colour names: Textual maps ANSI names through its terminal theme,
whose magenta is the very red of its red (Monokai), so a process named in "magenta" would look
like stderr. Red is kept for errors: stderr markers and counts, failed states.
"""

from __future__ import annotations

ERROR = "#ff5f5f"
WARNING = "#ffaf00"
GOOD = "#87d75f"

# Process names in the merged view, by config order: distinct from each other and from ERROR.
NAME_COLOURS = (
    "#5fafff",  # blue
    "#d7af5f",  # sand
    "#af87ff",  # violet
    "#5fd7d7",  # cyan
    "#d7d787",  # khaki
    "#87d7af",  # sea green
    "#afd7ff",  # pale blue
    "#d7afd7",  # lilac
)

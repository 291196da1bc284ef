"""The process table: one row per declared process plus a first "* all" row for the merged view.

The cursor row is the selection. Rows are created once (the set of processes comes from the
config and never changes while the console runs); refreshes only rewrite the cells whose text
changed, so the cursor, and the view it selects, stay where the user put them. Only those cells
are repainted, too: each repainted row costs a few hundred bytes on the terminal's link, and
uptimes tick every second.

Every column fits 80 columns with names of up to 5 characters; when the table is narrower than
its columns need (80 columns and longer names), the restarts and stdout-count columns are left
out (``NARROW_HIDDEN``), so that names up to 12 characters, CPU and memory still show. Their
values are still kept (``get_cell`` answers for them) and come back when the table is wider.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from ..engine.humanize import describe_exit, format_cpu, format_duration, format_memory
from ..engine.processes.supervisor import ProcessInfo, State
from .palette import ERROR, GOOD, WARNING

ALL_ROW = "*"  # row key of the merged view; process names cannot contain "*"
STATE_WIDTH = 10  # the state column's width; widened (up to MAX_STATE_WIDTH) for a reason
MAX_STATE_WIDTH = 24  # "waiting (db: completed)" fits

# (key, label, width, right-aligned); with cell padding they fit 80 columns with a 5-wide name,
# and with a 12-wide name once NARROW_HIDDEN are left out. Counts and sizes take 4 cells at most
# (format_count, format_cpu, format_memory).
_COLUMNS = (
    ("name", "name", None, False),  # as wide as the longest name (see ProcessTable)
    ("state", "state", STATE_WIDTH, False),
    ("pid", "pid", 7, True),
    ("uptime", "up", 6, True),
    ("restarts", "rst", 3, True),
    ("exit", "exit", 7, False),
    ("out", "out", 4, True),
    ("err", "err", 4, True),
    ("rate", "l/s", 4, True),
    ("cpu", "cpu%", 4, True),  # of one core, summed over the process group
    ("memory", "mem", 4, True),  # resident memory, summed over the process group
)
NARROW_HIDDEN = ("restarts", "out")  # left out when the table is narrower than every column
_STATE_STYLES = {
    State.RUNNING: GOOD,
    State.STOPPING: WARNING,
    State.STOPPED: "dim",
    State.EXITED: "dim",
    State.FAILED: f"bold {ERROR}",
    State.BACKOFF: WARNING,
    State.CRASH_LOOP: f"bold {ERROR}",
    State.WAITING_FOR_DEPENDENCIES: WARNING,
    State.BLOCKED: f"bold {ERROR}",
}


def state_cell(info: ProcessInfo) -> Text:
    """``running``; with a ready probe ``running`` until it passes, then ``ready``;
    ``unhealthy`` while its health probe fails; ``waiting (db: ready)``, ``blocked (migrate)``."""
    if info.state in State.HELD and info.reason:
        # A blocked reason starts with the dependency's name: enough to know where to look.
        shown = (
            info.reason if info.state == State.WAITING_FOR_DEPENDENCIES else info.reason.split()[0]
        )
        return Text(f"{info.state} ({shown})", style=_STATE_STYLES[info.state])
    if info.state == State.RUNNING:
        if info.health == "failing":
            return Text("unhealthy", style=f"bold {ERROR}")
        if any(probe.role == "ready" for probe in info.probes):
            return Text("ready", style=GOOD) if info.ready else Text("running", style=WARNING)
    return Text(info.state, style=_STATE_STYLES.get(info.state, ""))


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with a final ``…`` when it is longer (names are ASCII
    or narrow: a config key)."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_count(count: float) -> str:
    """Compact: 999, 1.2k, 12k, 1.2M, 12M, 1.2G."""
    if count < 1000:
        return f"{count:.0f}" if count >= 10 or count == int(count) else f"{count:.1f}"
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        value = count / scale
        if value < 999.5 or unit == "G":
            return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def _uptime_cell(info: ProcessInfo) -> str:
    if info.restart_in is not None and info.state in State.WAITING:
        # "↻2s": restarting in 2s; rounded up, so that it never reads 0s before the restart.
        return "↻" + format_duration(info.restart_in + 0.999)
    return format_duration(info.uptime)


def process_row(info: ProcessInfo) -> dict[str, str | Text]:
    """The cells of one process row, by column key."""
    return {
        "name": info.name,
        "state": state_cell(info),
        "pid": "" if info.pid is None else str(info.pid),
        "uptime": _uptime_cell(info),
        "restarts": str(info.restarts),
        "exit": describe_exit(info.exit_code),
        "out": format_count(info.stdout_lines),
        "err": Text(format_count(info.stderr_lines), style=ERROR if info.stderr_lines else ""),
        "rate": format_count(info.lines_per_second) if info.lines_per_second >= 0.05 else "",
        "cpu": format_cpu(info.cpu_percent),
        "memory": format_memory(info.rss_bytes),
    }


def summary_row(infos: Sequence[ProcessInfo]) -> dict[str, str | Text]:
    """The cells of the "* all" row: totals over every process."""
    running = sum(1 for info in infos if info.state == State.RUNNING)
    troubled = any(info.state in (State.FAILED, State.CRASH_LOOP) for info in infos)
    stderr_lines = sum(info.stderr_lines for info in infos)
    rate = sum(info.lines_per_second for info in infos)
    return {
        "name": "* all",
        "state": Text(f"{running}/{len(infos)} up", style=f"bold {ERROR}" if troubled else ""),
        "pid": "",
        "uptime": "",
        "restarts": str(sum(info.restarts for info in infos)),
        "exit": "",
        "out": format_count(sum(info.stdout_lines for info in infos)),
        "err": Text(format_count(stderr_lines), style=ERROR if stderr_lines else ""),
        "rate": format_count(rate) if rate >= 0.05 else "",
        "cpu": format_cpu(_total(info.cpu_percent for info in infos)),
        "memory": format_memory(_total(info.rss_bytes for info in infos)),
    }


def _total(values: Iterable[float | None]) -> float | None:
    """The sum of the values known; None when none is."""
    known = [value for value in values if value is not None]
    return sum(known) if known else None


class ProcessTable(DataTable[str | Text]):
    """Processes as rows; the cursor row selects what the log view shows."""

    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        # Enter shows the log's line in full (the app's detail panel), as it does in Events.
        Binding("enter", "app.toggle_line_detail", show=False),
        # The table is short; paging keys scroll the log below instead (see LacrimosaApp).
        Binding("pageup", "app.log_page_up", show=False),
        Binding("pagedown", "app.log_page_down", show=False),
        Binding("home", "app.log_home", show=False),
        Binding("end", "app.log_end", show=False),
    ]

    _updating_cell = False  # a class default: DataTable.__init__ already refreshes

    def __init__(self, name_width: int, screen_width: int | None = None, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._name_width = name_width
        self._cells: dict[str, dict[str, str | Text]] = {}  # every column's, shown or not
        # From the screen's width until the table has its own (see on_resize).
        self._shown = self._columns_for(screen_width)

    def on_mount(self) -> None:
        self._add_columns()

    def on_resize(self) -> None:
        shown = self._columns_for(self.size.width)
        if shown != self._shown:
            self._shown = shown
            cursor = self.cursor_row
            # The same rows and selection, in other columns: not a selection change.
            with self.prevent(DataTable.RowHighlighted):
                self.clear(columns=True)
                self._add_columns()
                for key, cells in self._cells.items():
                    self.add_row(*(cells[column] for column in shown), key=key)
                if self.row_count:
                    self.move_cursor(row=min(cursor, self.row_count - 1), animate=False)

    def _columns_for(self, width: int | None) -> tuple[str, ...]:
        """The columns shown at this width (all when it is not known yet)."""
        every = tuple(key for key, *_ in _COLUMNS)
        needed = sum((w or self._name_width) + 2 * self.cell_padding for _, _, w, _ in _COLUMNS)
        if width is None or width >= needed:
            return every
        return tuple(key for key in every if key not in NARROW_HIDDEN)

    def _add_columns(self) -> None:
        for key, label, width, right in _COLUMNS:
            if key in self._shown:
                label_text = Text(label, justify="right" if right else "left")
                self.add_column(label_text, width=width or self._name_width, key=key)

    def get_cell(self, row_key: object, column_key: object) -> str | Text:
        """A cell's value, also of a column left out at this width."""
        if column_key in NARROW_HIDDEN and column_key not in self._shown:
            return self._cells[str(row_key)][str(column_key)]
        return super().get_cell(row_key, column_key)  # type: ignore[arg-type]

    @property
    def selected_process(self) -> str | None:
        """The process under the cursor; None for the "* all" row."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return None if row_key.value == ALL_ROW else row_key.value

    def select_row(self, key: str) -> None:
        self.move_cursor(row=self.get_row_index(key))

    def move_selection(self, step: int) -> None:
        """Move the cursor by ``step`` rows, wrapping around at either end."""
        if self.row_count:
            self.move_cursor(row=(self.cursor_row + step) % self.row_count)

    def show_processes(self, infos: Sequence[ProcessInfo]) -> None:
        """Bring the rows up to date, touching only the cells whose text changed."""
        rows = [(ALL_ROW, summary_row(infos))]
        rows += [(info.name, process_row(info)) for info in infos]
        self._fit_state_column(max(len(str(cells["state"])) for _, cells in rows))
        for key, cells in rows:
            cells = {column: _aligned(column, value) for column, value in cells.items()}
            cells["name"] = fit(str(cells["name"]), self._name_width)
            cells["state"] = _fit_text(cells["state"], self._state_width())
            before = self._cells.get(key)
            if before is None:
                self.add_row(*(cells[column] for column in self._shown), key=key)
            else:
                changed = [c for c in self._shown if _looks(before[c]) != _looks(cells[c])]
                if changed:
                    self._update_cells(key, {column: cells[column] for column in changed})
            self._cells[key] = cells

    def _state_width(self) -> int:
        column = self.columns.get(ColumnKey("state"))
        return STATE_WIDTH if column is None else column.width

    def _fit_state_column(self, wanted: int) -> None:
        """Widen the state column for a waiting reason, as far as the table's width allows
        (never narrowed again: no jitter; what does not fit is cut)."""
        column = self.columns.get(ColumnKey("state"))
        if column is None or wanted <= column.width or not self.size.width:
            return
        spare = self.size.width - sum(c.get_render_width(self) for c in self.columns.values())
        width = min(wanted, MAX_STATE_WIDTH, column.width + max(spare, 0))
        if width > column.width:
            column.width = width
            self._require_update_dimensions = True
            self.refresh(layout=True)

    def _update_cells(self, row: str, cells: dict[str, str | Text]) -> None:
        """``update_cell`` for each of ``cells``, repainting only that cell, or that row when
        more than one changed (DataTable's update_cell repaints the whole table)."""
        self._updating_cell = True
        try:
            for column, value in cells.items():
                self.update_cell(row, column, value)
        finally:
            self._updating_cell = False
        # Textual writes a line from the widget's left edge to the end of the last cell
        # repainted, once per separate span: one span a row.
        row_index = self.get_row_index(row)
        if len(cells) == 1:
            (column,) = cells
            self.refresh_coordinate(Coordinate(row_index, self.get_column_index(column)))
        else:
            self.refresh_row(row_index)

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> ProcessTable:
        if self._updating_cell and not (regions or layout or recompose):
            return self  # update_cell's whole-table repaint: _update_one_cell repaints the cell
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


_RIGHT_ALIGNED = {key for key, _, _, right in _COLUMNS if right}


def _fit_text(value: str | Text, width: int) -> str | Text:
    """``fit`` for a cell that may be styled text (the style is kept)."""
    if isinstance(value, Text) and len(value.plain) > width:
        return Text(fit(value.plain, width), style=value.style)
    return value if isinstance(value, Text) else fit(value, width)


def _looks(value: str | Text) -> tuple[str, str, str]:
    """What a cell shows (rich's Text equality ignores the base style, so compare this)."""
    if isinstance(value, Text):
        return value.plain, str(value.style), str(value.justify)
    return value, "", ""


def _aligned(column: str, value: str | Text) -> str | Text:
    if column not in _RIGHT_ALIGNED:
        return value
    text = value if isinstance(value, Text) else Text(value)
    text.justify = "right"
    return text

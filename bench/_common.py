"""What every benchmark script shares: the command line, rows, the table, statistics.

A benchmark module defines ``run(quick: bool) -> list[Row]`` and ends with
``if __name__ == "__main__": sys.exit(main(run, __doc__))``. Run alone it prints its own table;
``bench/run.py`` runs each module in a fresh interpreter with ``--json`` and prints one table.

``--root DIR`` measures the ``engine/``, ``api/`` and ``tui/`` found in DIR instead of this
checkout's: that is how a prototype in a scratch copy is measured with the same harness.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ("benchmark", "lacrimosa", "reference", "ratio", "target", "met?")


class Skip(Exception):
    """A prerequisite is missing (e.g. the TUI is not written yet): reported, not a failure."""


@dataclass
class Row:
    """One line of the table. ``data`` carries the raw numbers for ``--json``."""

    benchmark: str
    lacrimosa: str
    reference: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: no target, or skipped
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> tuple[str, ...]:
        ratio = "" if self.ratio is None else _format_ratio(self.ratio)
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return (self.benchmark, self.lacrimosa, self.reference, ratio, self.target, met)


def _format_ratio(ratio: float) -> str:
    if ratio == 0 or not math.isfinite(ratio):
        return str(ratio)
    return f"{ratio:.3g}x" if ratio < 1000 else f"{ratio:,.0f}x"


def skipped_row(benchmark: str, reason: str) -> Row:
    return Row(benchmark, f"skipped: {reason}", met=None, data={"skipped": reason})


# -- statistics ----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): an observed value, never an interpolation."""
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms * 1e3:.1f} µs" if ms < 0.1 else f"{ms:.3f} ms"


def fmt_rate(per_second: float, unit: str = "lines/s") -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M {unit}"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k {unit}"
    return f"{per_second:.1f} {unit}"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (perf_counter)."""

    seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def rss_bytes() -> int:
    """Resident set size of this process now (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def unmapped_shared_bytes() -> int:
    """Shared memory on the machine not mapped into this process's page tables: ``Shmem``
    (/proc/meminfo) minus this process's ``RssShmem``. The log store's blocks are memfds written
    with ``pwrite``, whose pages exist without being touched through the mapping, so RSS alone
    misses them; its growth over a run adds them back (on a machine where nothing else makes
    shared memory meanwhile)."""
    machine = proc_sizes("/proc/meminfo", "Shmem")["Shmem"]
    return machine - proc_sizes("/proc/self/status", "RssShmem")["RssShmem"]


def proc_sizes(path: str, *names: str) -> dict[str, int]:
    """The named fields of a /proc file that gives sizes in kB (``/proc/PID/status``,
    ``/proc/meminfo``), in bytes; 0 for a field it lacks."""
    sizes = dict.fromkeys(names, 0)
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in sizes:
                sizes[name] = int(value.split()[0]) << 10
    return sizes


def startup_env(pycache: Path) -> dict[str, str]:
    """The environment for start-up timings: bytecode cached, as on a user's machine.

    This dev environment sets PYTHONDONTWRITEBYTECODE=1, which would make every start compile
    from source. The cache goes to ``pycache`` (PYTHONPYCACHEPREFIX), so nothing is written into
    the checkout; callers run each command once to warm it.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


# -- command line --------------------------------------------------------------------------------


@contextlib.contextmanager
def headless_console(
    config: Path, env: dict[str, str], log: Path, cli: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``lacrimosa up --headless -f CONFIG`` in CONFIG's folder, its output to ``log``; stopped on
    the way out with ``CLI shutdown`` (``cli`` runs the one-shot CLI), terminated if that fails."""
    with log.open("wb") as log_file:
        console = subprocess.Popen(
            [sys.executable, "-m", "lacrimosa.api.cli", "up", "--headless", "-f", str(config)],
            cwd=config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        yield console
    finally:
        subprocess.run(
            [*cli, "shutdown"], cwd=config.parent, env=env, capture_output=True, check=False
        )
        try:
            console.wait(timeout=30)
        except subprocess.TimeoutExpired:
            console.terminate()
            console.wait(timeout=10)


def use_root(root: Path) -> None:
    """Import ``lacrimosa.engine``/``.api``/``.tui`` from ``root`` (this checkout by default).

    Installed, those are the folders engine/, api/, tui/ mapped into the ``lacrimosa`` package; a
    package module whose ``__path__`` is ``root`` gives the same names for any checkout, so an
    older one can be measured beside this one without installing it.
    """
    root = root.resolve()
    os.environ["LACRIMOSA_BENCH_ROOT"] = str(root)
    sys.modules["lacrimosa"] = package_from(root)


def package_from(root: Path) -> types.ModuleType:
    package = types.ModuleType("lacrimosa")
    package.__path__ = [str(root)]
    return package


def package_shim(root: Path, folder: Path) -> Path:
    """A folder to put on PYTHONPATH so that a child interpreter imports ``lacrimosa`` from
    ``root``: it holds ``lacrimosa/__init__.py``, which points the package at ``root``."""
    package = folder / "lacrimosa"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"__path__ = [{str(root.resolve())!r}]\n")
    return folder


def code_root() -> Path:
    return Path(os.environ.get("LACRIMOSA_BENCH_ROOT", REPO))


def require(*modules: str) -> None:
    """Skip the benchmark unless each module (``"lacrimosa.tui.app"``) exists in the code
    measured and imports."""
    for module in modules:
        path = code_root().joinpath(*module.split(".")[1:]).with_suffix(".py")
        if not path.is_file():
            raise Skip(f"{path.relative_to(code_root())} does not exist yet")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise Skip(f"{module} does not import: {exc}") from exc


def main(run: Callable[[bool], list[Row]], doc: str | None) -> int:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (small sizes)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO,
        help="measure the engine/api/tui found in this folder (default: this repo)",
    )
    args = parser.parse_args()
    use_root(args.root)
    try:
        rows = run(args.quick)
    except Skip as exc:
        rows = [skipped_row(Path(sys.argv[0]).stem, str(exc))]
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        print_table(rows)
    return 0


def print_table(rows: Sequence[Row], out: Any = None) -> None:
    out = out or sys.stdout
    lines = [COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def fmt(cells: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print(fmt(COLUMNS), file=out)
    print("-+-".join("-" * w for w in widths), file=out)
    for line in lines[1:]:
        print(fmt(line), file=out)
    notes = [(r.benchmark, n) for r in rows for n in r.notes]
    if notes:
        print(file=out)
        for benchmark, note in notes:
            print(f"  {benchmark}: {note}", file=out)


# -- supervisord, the reference for the capture and small-writes benchmarks ------------------------


def install_supervisord(folder: Path) -> Path | str:
    """``supervisor`` from PyPI, pip-installed into a temporary venv under ``folder`` (never the
    checkout). Returns the ``supervisord`` executable, or a sentence saying why there is none."""
    import subprocess
    import venv

    env_dir = folder / "supervisor-venv"
    try:
        venv.create(env_dir, with_pip=True)
        done = subprocess.run(
            [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "supervisor"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not install supervisor: {exc}"
    executable = env_dir / "bin" / "supervisord"
    if done.returncode != 0 or not executable.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"could not install supervisor from PyPI: {last}"
    return executable


class Supervisord:
    """A real supervisord in ``folder`` running ``programs`` (name -> shell command, stdout to
    ``folder/NAME.log``, not started until :meth:`start`), driven over XML-RPC on a Unix socket.

    ``with Supervisord(exe, folder, programs) as sd: sd.start("seq")``
    """

    def __init__(self, executable: Path, folder: Path, programs: dict[str, str]) -> None:
        self.folder = folder
        self.socket = folder / "supervisor.sock"
        sections = [
            "[supervisord]",
            f"logfile={folder / 'supervisord.log'}",
            f"pidfile={folder / 'supervisord.pid'}",
            f"childlogdir={folder}",
            "nodaemon=true",
            "loglevel=warn",
            "[unix_http_server]",
            f"file={self.socket}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for name, command in programs.items():
            sections += [
                f"[program:{name}]",
                f"command={command}",
                "autostart=false",
                "autorestart=false",
                "startsecs=0",
                f"stdout_logfile={self.log(name)}",
                "stdout_logfile_maxbytes=0",
                "stderr_logfile=NONE",
            ]
        config = folder / "supervisord.conf"
        config.write_text("\n".join(sections) + "\n")
        self._args = [str(executable), "-c", str(config)]
        self._proc: Any = None

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def __enter__(self) -> Supervisord:
        import subprocess

        self._proc = subprocess.Popen(
            self._args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc().supervisor.getState()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("supervisord did not come up") from None
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)  # it stops its programs, then exits
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def rpc(self) -> Any:
        import http.client
        import socket
        import xmlrpc.client

        path = str(self.socket)

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)

        class UnixTransport(xmlrpc.client.Transport):
            def make_connection(self, host: Any) -> http.client.HTTPConnection:
                return UnixConnection("localhost")

        return xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport())

    def start(self, name: str) -> None:
        """Ask for the program to start; returns once supervisord has spawned it."""
        self.rpc().supervisor.startProcess(name, False)

    def start_all(self) -> None:
        self.rpc().supervisor.startAllProcesses(False)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

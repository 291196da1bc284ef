"""Where a project's config and its running console's state live.

Kept free of heavy imports: the one-shot CLI imports this on every call, and uses the ``str``
forms (``find_config_file``, ``socket_file``): ``pathlib`` alone costs it milliseconds. The
``Path`` forms are for the console.

The state folder ("home") is ``--home DIR``, else ``$LACRIMOSA_HOME``, else ``.lacrimosa/`` beside
the nearest ``lacrimosa.toml`` or ``Procfile`` found walking up from the current folder.
"""

from __future__ import annotations

import os
import stat
import time

from .errors import ConsoleError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from pathlib import Path

CONFIG_NAMES = ("lacrimosa.toml", "Procfile")
HOME_DIR_NAME = ".lacrimosa"
SOCKET_NAME = "control.sock"
LOCK_NAME = "console.lock"  # flock-ed by the running console, from before it binds its socket
PID_NAME = "console.pid"  # the pid of a console started by `up -d`, while it runs
LOG_NAME = "console.log"  # the output of a console started by `up -d`
GITIGNORE = b"# lacrimosa's state: not for version control\n*\n"
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def find_config(start: Path | None = None) -> Path | None:
    """The nearest lacrimosa.toml (preferred) or Procfile in ``start`` or a parent folder."""
    from pathlib import Path

    found = find_config_file(None if start is None else os.fspath(start))
    return None if found is None else Path(found)


def find_config_file(start: str | None = None) -> str | None:
    """``find_config`` as a ``str`` (the folders are resolved as ``Path.resolve`` does)."""
    folder = os.path.realpath(os.getcwd() if start is None else start)
    while True:
        for name in CONFIG_NAMES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def resolve_home(
    home: str | os.PathLike[str] | None = None, config: Path | None = None
) -> Path | None:
    """The state folder to use, or None when nothing says where it is."""
    from pathlib import Path

    if home:
        return Path(home).resolve()
    env = os.environ.get("LACRIMOSA_HOME")
    if env:
        return Path(env).resolve()
    config = config or find_config()
    if config is None:
        return None
    return config.resolve().parent / HOME_DIR_NAME


def socket_path(home: Path) -> Path:
    """The control socket of the console whose state folder is ``home``.

    Inside ``home`` when the path fits in a Unix socket address; otherwise a short path under the
    temp folder, derived from ``home`` so that the console and every CLI call agree on it.
    """
    from pathlib import Path

    return Path(socket_file(home))


def socket_file(home: str | os.PathLike[str]) -> str:
    """``socket_path`` as a ``str``; ``home`` absolute and normalized (as a ``Path`` is)."""
    home = os.fspath(home)
    inside = os.path.join(home, SOCKET_NAME)
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
        return inside
    # Imported here: the one-shot CLI pays for every import, and this path is rarely taken.
    import hashlib
    import tempfile

    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"lacrimosa-{os.getuid()}", f"{digest}.sock")


def check_state_folder(home: Path, create: bool = False) -> None:
    """Refuse a state folder that someone else could tamper with: it must be a folder of this
    user's with no group/other write access (else another user could put their own socket, say,
    in place of the console's). ``create`` makes it first (mode 700, with a ``.gitignore`` of
    ``*`` so that it never shows in ``git status``) if it does not exist yet.
    """
    if create:
        try:
            home.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(home, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConsoleError(f"cannot create the state folder {home}: {exc.strerror}") from None
        else:
            _write_new(home / ".gitignore", GITIGNORE)
    try:
        info = os.stat(home)
    except OSError as exc:
        raise ConsoleError(f"cannot use the state folder {home}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConsoleError(f"the state folder {home} is not a folder")
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.getuid():
        problem = f"it belongs to another user (uid {info.st_uid})"
    elif mode & 0o022:
        problem = f"others can write to it (mode {mode:o})"
    else:
        return
    raise ConsoleError(
        f"refusing the state folder {home}: {problem}; it must be yours and writable only by "
        f"you (remove it, or `chmod go-w {home}` if it is yours)"
    )


LOCK_PATIENCE = 0.5  # seconds to retry taking the lock (a client's probe holds it a moment)


def lock_console(home: Path, create: bool = True) -> int:
    """Take the state folder's console lock (an exclusive ``flock`` on ``console.lock``, held
    for the console's life: its descriptor is returned) or raise ConsoleError when another
    console holds it. Taken as early as ``up`` can (before the engine is even imported), so a
    client that finds no socket, or a stale one, while the lock is held knows a console is
    starting (see ``console_starting``). ``create``: make the state folder if it is missing."""
    import fcntl  # here and in console_starting: a one-shot call that connects needs neither

    check_state_folder(home, create=create)
    lock_path = home / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConsoleError(f"cannot open {lock_path}: {exc.strerror}") from None
    # A client's probe (console_starting) holds a shared lock for a moment: try again for a
    # little while before saying another console runs.
    give_up = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < give_up:
                time.sleep(0.01)
                continue
            os.close(fd)
            raise ConsoleError(f"a console is already running here ({home})") from None
        except OSError as exc:
            os.close(fd)
            raise ConsoleError(f"cannot lock {lock_path}: {exc.strerror}") from None
        return fd


def console_starting(home: str | os.PathLike[str]) -> bool:
    """Whether a console holds the state folder's lock: it runs, or is starting. Probed with a
    shared lock released at once (a console taking its lock then retries: ``lock_console``)."""
    import fcntl

    try:
        fd = os.open(os.path.join(home, LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: no console has run here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock, if it took one
    return False


def write_pid_file(home: Path) -> None:
    """Write this process's pid to ``console.pid`` beside the lock (held by this process: one
    left by a console that was killed is replaced), never through a symlink."""
    remove_pid_file(home)
    _write_new(home / PID_NAME, f"{os.getpid()}\n".encode())


def remove_pid_file(home: Path) -> None:
    import contextlib  # the console's way out only (contextlib loads functools, collections)

    with contextlib.suppress(OSError):  # gone already, or the folder with it
        os.unlink(home / PID_NAME)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``; never through a symlink, never over an existing file."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except OSError as exc:
        raise ConsoleError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)

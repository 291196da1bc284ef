"""Where a project's config and its running console's state live.

Kept free of heavy imports: the one-shot CLI imports this on every call.

The state folder ("home") is ``--home DIR``, else ``$LACRIMOSA_HOME``, else ``.lacrimosa/`` beside
the nearest ``lacrimosa.toml`` or ``Procfile`` found walking up from the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_NAMES = ("lacrimosa.toml", "Procfile")
HOME_DIR_NAME = ".lacrimosa"
SOCKET_NAME = "control.sock"
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def find_config(start: Path | None = None) -> Path | None:
    """The nearest lacrimosa.toml (preferred) or Procfile in ``start`` or a parent folder."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        for name in CONFIG_NAMES:
            path = candidate / name
            if path.is_file():
                return path
    return None


def resolve_home(
    home: str | os.PathLike[str] | None = None, config: Path | None = None
) -> Path | None:
    """The state folder to use, or None when nothing says where it is."""
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
    inside = home / SOCKET_NAME
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
        return inside
    # Imported here: the one-shot CLI pays for every import, and this path is rarely taken.
    import hashlib
    import tempfile

    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"lacrimosa-{os.getuid()}" / f"{digest}.sock"

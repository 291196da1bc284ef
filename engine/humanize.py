"""Small formatting helpers shared by the CLI and the TUI (standard library only: the one-shot
CLI imports this)."""

from __future__ import annotations

import time


def describe_exit(code: int | None) -> str:
    """An exit status as people read it: ``"0"``, ``"3"``, ``"SIGKILL"``; empty when none."""
    if code is None:
        return ""
    if code < 0:
        import signal  # here: it imports enum, a few ms of every one-shot call

        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def format_duration(seconds: float | None) -> str:
    """Compact uptime: ``45s``, ``12m05s``, ``3h02m``, ``2d04h``; empty when None."""
    if seconds is None:
        return ""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def local_clock(seconds: float) -> str:
    """``hh:mm:ss.mmm`` in local time (for event times: the CLI's and the TUI's)."""
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%H:%M:%S", time.localtime(whole)) + f".{millis:03d}"


def local_time(seconds: float) -> str:
    """``YYYY-MM-DD hh:mm:ss`` in local time (audit records and key times: they span days)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

"""Small formatting helpers shared by the CLI and the TUI (standard library only: the one-shot
CLI imports this)."""

from __future__ import annotations

import time

_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$"  # compiled on first use (re caches it)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


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


def exit_words(code: int | None) -> str:
    """An exit as a sentence's end: ``exited with code 3``, ``killed by SIGKILL``."""
    if code is None:
        return "no exit yet"
    if code < 0:
        return f"killed by {describe_exit(code)}"
    return f"exited with code {code}"


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


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or plain seconds → seconds."""
    import re  # only the verbs that take a duration need it

    match = re.match(_DURATION, text)
    if not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 30s, 5m, 2h, 1d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def local_time(seconds: float) -> str:
    """``YYYY-MM-DD hh:mm:ss`` in local time (audit records and key times: they span days)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def format_memory(count: float | None) -> str:
    """Bytes in at most 4 characters: ``812K``, ``9.5M``, ``45M``, ``1.2G`` (units of 1024,
    the next one from 1000 on); empty when None."""
    if count is None:
        return ""
    if count < 1000:
        return f"{count:.0f}B"
    value = float(count)
    for unit in ("K", "M", "G", "T"):
        value /= 1024
        if value < 999.5 or unit == "T":
            return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def format_cpu(percent: float | None) -> str:
    """CPU% of one core in at most 4 characters: ``0.3``, ``12``, ``250``, ``1600``; empty when
    None (not sampled yet)."""
    if percent is None:
        return ""
    return f"{percent:.1f}" if percent < 9.95 else f"{percent:.0f}"

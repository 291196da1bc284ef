"""The query language over logs and events: ``parse`` a query (syntax.py), ``execute`` it over
a store snapshot or the event journal (executor.py); what fields and operators mean (values.py)."""

from .executor import MAX_ROWS, LineRow, Result, execute, format_time, select_rows
from .syntax import Query, parse, parse_where

__all__ = [
    "MAX_ROWS",
    "LineRow",
    "Query",
    "Result",
    "execute",
    "format_time",
    "parse",
    "parse_where",
    "select_rows",
]

"""The query language's syntax: a tokenizer and a hand-written recursive-descent parser.

Hand-written rather than a parsing library (lark): the grammar is small (one statement, an
expression with three precedence levels), a hand-written parser knows at every point what it
expected, so each error names it at its exact column, and it costs no dependency nor a grammar
compile at the console's start. The grammar (the README's "Query language" section)::

    query    := SELECT columns FROM sources clause*
    clause   := WHERE expr | SINCE time | UNTIL time | GROUP BY group (',' group)*
              | ORDER BY name [ASC | DESC] | LIMIT int | OFFSET int      (each at most once)
    columns  := '*' | column (',' column)*
    column   := field | AGG '(' ('*' | field) ')'           AGG: count min max avg sum
    sources  := source (',' source)*                         source: '*' | events | NAME | "NAME"
    expr     := and (OR and)*
    and      := not (AND not)*
    not      := NOT not | '(' expr ')' | predicate
    predicate:= field (= | != | > | >= | < | <=) value
              | field [NOT] (CONTAINS | STARTSWITH | MATCHES) string
              | field [NOT] IN '(' value (',' value)* ')'
              | field [NOT] EXISTS
    value    := "string" | 'string' | number | true | false | null
    time     := RFC 3339 time (2026-11-23T10:00:00Z) | duration back from now (30s 5m 2h 1d)
    group    := duration (a time bucket: 1m) | field

Keywords are case-insensitive. A field is a name with dots for nesting (``a.b``); one that is a
keyword or holds other characters goes in backquotes (```order```, ```x-y```).

Every failure is a :class:`QuerySyntaxError` with the 0-based offset into the query of what was
wrong and what was expected there; nothing else is raised, whatever the text (a fuzzer checks).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import re2

from ..errors import QuerySyntaxError

MAX_QUERY_CHARS = 8192  # longer queries are refused before tokenizing
MAX_DEPTH = 64  # nesting of parentheses and NOTs: deeper is refused, not a RecursionError
MAX_IN_VALUES = 1024
MAX_COLUMNS = 64
AGGREGATES = ("count", "min", "max", "avg", "sum")
# fmt: off
KEYWORDS = frozenset((
    "select", "from", "where", "and", "or", "not", "in", "exists", "contains", "startswith",
    "matches", "since", "until", "order", "by", "group", "limit", "offset", "asc", "desc",
    "true", "false", "null",
))
# fmt: on
COMPARISONS = ("=", "!=", ">", ">=", "<", "<=")
TEXT_OPERATORS = ("contains", "startswith", "matches")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_FIELD = re.compile(r"[A-Za-z_@$][\w@$-]*(?:\.[\w@$-]+)*", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_PUNCTUATION = ("!=", "<>", ">=", "<=", "(", ")", ",", "*", "=", ">", "<")
_WORD_END = frozenset(" \t\r\n\f\v()*,=!<>\"'`")
MAX_LIMIT = 10**9


# -- the tree -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: str  # one of COMPARISONS
    value: object  # str, int, float, bool or None
    position: int = 0


@dataclass(frozen=True, slots=True)
class Text:
    """CONTAINS, STARTSWITH or MATCHES (``pattern``: for MATCHES, see ``compile_pattern``)."""

    field: str
    op: str
    value: str
    # compare=False: two parses of one query are equal, though each compiles its own matcher.
    pattern: Callable[[str], object] | None = dataclasses.field(default=None, compare=False)
    position: int = 0


@dataclass(frozen=True, slots=True)
class In:
    field: str
    values: tuple[object, ...]
    position: int = 0


@dataclass(frozen=True, slots=True)
class Exists:
    field: str
    position: int = 0


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Compare | Text | In | Exists | Not | And | Or


@dataclass(frozen=True, slots=True)
class Column:
    """A selected column: a field, or an aggregate of one (``field`` "*" for ``count(*)``)."""

    field: str
    aggregate: str | None = None
    position: int = 0

    @property
    def name(self) -> str:
        return f"{self.aggregate}({self.field})" if self.aggregate else self.field


@dataclass(frozen=True, slots=True)
class Source:
    """A process, type, instance or glob (``stream`` from ``api.stderr``), ``*`` or ``events``."""

    name: str
    position: int = 0


@dataclass(frozen=True, slots=True)
class Group:
    """A GROUP BY key: a time bucket of ``bucket`` seconds, or a field."""

    field: str | None = None
    bucket: float | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Query:
    columns: tuple[Column, ...]  # empty: ``*``
    sources: tuple[Source, ...]
    where: Expr | None = None
    since: float | None = None  # unix time
    until: float | None = None
    group_by: tuple[Group, ...] = ()
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None
    offset: int = 0
    text: str = field(default="", compare=False)

    @property
    def aggregated(self) -> bool:
        return bool(self.group_by) or any(c.aggregate for c in self.columns)


# -- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "quoted" (a backquoted name), "punct", "end"
    text: str  # the word, the string's value, the punctuation
    position: int

    @property
    def keyword(self) -> str | None:
        return self.text.lower() if self.kind == "word" and self.text.lower() in KEYWORDS else None

    def shown(self) -> str:
        if self.kind == "end":
            return "the end of the query"
        if self.kind == "string":
            return f"the string {self.text!r}"
        return repr(self.text)


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'`":
            value, end = _quoted(text, i)
            out.append(_Token("quoted" if c == "`" else "string", value, i))
            i = end
            continue
        for punct in _PUNCTUATION:
            if text.startswith(punct, i):
                out.append(_Token("punct", "!=" if punct == "<>" else punct, i))
                i += len(punct)
                break
        else:
            if c == "!":
                raise QuerySyntaxError("'!' must be followed by '=' (!=)", text, i)
            start = i
            while i < n and text[i] not in _WORD_END and not text[i].isspace():
                i += 1
            out.append(_Token("word", text[start:i], start))
    out.append(_Token("end", "", n))
    return out


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "`": "`", "0": "\0"}


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The value of the quoted string or name at ``start``, and the offset after its end."""
    quote = text[start]
    parts: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(parts), i + 1
        if c == "\\":
            if i + 1 >= len(text):
                break
            if text[i + 1] == "u":  # \uXXXX, as JSON writes it
                digits = text[i + 2 : i + 6]
                if len(digits) == 4 and all(d in "0123456789abcdefABCDEF" for d in digits):
                    parts.append(chr(int(digits, 16)))
                    i += 6
                    continue
                raise QuerySyntaxError("\\u must be followed by 4 hex digits", text, i)
            escaped = _ESCAPES.get(text[i + 1])
            if escaped is None:
                raise QuerySyntaxError(
                    f"unknown escape \\{text[i + 1]} (known: \\n \\t \\r \\\\ \\{quote} \\uXXXX)",
                    text,
                    i,
                )
            parts.append(escaped)
            i += 2
            continue
        parts.append(c)
        i += 1
    raise QuerySyntaxError(f"a {quote} string that is never closed", text, start)


# -- the parser ---------------------------------------------------------------------------------


def parse_duration(text: str) -> float | None:
    """``30s``, ``5m``, ``2h``, ``1d``, ``250ms`` → seconds (None: not a duration)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_time(text: str, now: float) -> float | None:
    """An RFC 3339 time (a ``Z`` or an offset; none: UTC) or a duration back from ``now``."""
    back = parse_duration(text)
    if back is not None:
        return now - back
    if len(text) < 10 or not text[:4].isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class _Parser:
    def __init__(self, text: str, now: float) -> None:
        self.text = text
        self.now = now
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    # helpers

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: _Token | None = None) -> QuerySyntaxError:
        token = token or self.token
        return QuerySyntaxError(
            f"expected {expected}, found {token.shown()}", self.text, token.position, expected
        )

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.keyword in words

    def at_punct(self, punct: str) -> bool:
        return self.token.kind == "punct" and self.token.text == punct

    def expect_keyword(self, word: str) -> _Token:
        if not self.at_keyword(word):
            raise self.fail(word.upper())
        return self.take()

    def expect_punct(self, punct: str, expected: str | None = None) -> _Token:
        if not self.at_punct(punct):
            raise self.fail(expected or f"'{punct}'")
        return self.take()

    # grammar

    def query(self) -> Query:
        self.expect_keyword("select")
        columns = self.columns()
        self.expect_keyword("from")
        sources = self.sources()
        clauses: dict[str, object] = {}
        order: tuple[str, bool] | None = None
        while self.token.kind != "end":
            token = self.token
            word = token.keyword
            if word not in ("where", "since", "until", "group", "order", "limit", "offset"):
                raise self.fail(
                    "WHERE, SINCE, UNTIL, GROUP BY, ORDER BY, LIMIT, OFFSET or the end"
                    if not clauses
                    else "another clause (WHERE, SINCE, UNTIL, GROUP BY, ORDER BY, LIMIT, "
                    "OFFSET) or the end"
                )
            if word in clauses:
                raise QuerySyntaxError(
                    f"{word.upper()} given twice", self.text, token.position, "each clause once"
                )
            self.take()
            if word == "where":
                clauses[word] = self.expr()
            elif word in ("since", "until"):
                clauses[word] = self.time()
            elif word == "group":
                self.expect_keyword("by")
                clauses[word] = self.groups()
            elif word == "order":
                self.expect_keyword("by")
                clauses[word] = order = self.order()
            else:
                clauses[word] = self.integer()
        since = clauses.get("since")
        until = clauses.get("until")
        where = clauses.get("where")
        groups = clauses.get("group", ())
        limit = clauses.get("limit")
        offset = clauses.get("offset", 0)
        assert isinstance(groups, tuple)
        assert isinstance(offset, int)
        query = Query(
            columns=columns,
            sources=sources,
            where=where,  # type: ignore[arg-type]  # set by expr()
            since=since if isinstance(since, float) else None,
            until=until if isinstance(until, float) else None,
            group_by=groups,
            order_by=order[0] if order else None,
            descending=order[1] if order else False,
            limit=limit if isinstance(limit, int) else None,
            offset=offset,
            text=self.text,
        )
        self.check(query)
        return query

    def check(self, query: Query) -> None:
        """What parses but means nothing: plain fields beside aggregates, mixed sources."""
        if query.aggregated:
            grouped = {g.field for g in query.group_by if g.field}
            for column in query.columns:
                if column.aggregate is None and column.field not in grouped:
                    raise QuerySyntaxError(
                        f"{column.field} is neither aggregated nor in GROUP BY",
                        self.text,
                        column.position,
                        "an aggregate (count, min, max, avg, sum) or a GROUP BY field",
                    )
            if not query.columns:
                raise QuerySyntaxError(
                    "SELECT * cannot be grouped", self.text, 7, "aggregates (count(*), ...)"
                )
        names = [s.name for s in query.sources]
        if "events" in names and len(names) > 1:
            source = query.sources[1 if names[0] == "events" else names.index("events")]
            raise QuerySyntaxError(
                "events cannot be mixed with processes in one query",
                self.text,
                source.position,
                "events alone, or processes",
            )

    def columns(self) -> tuple[Column, ...]:
        if self.at_punct("*"):
            self.take()
            return ()
        columns = [self.column()]
        while self.at_punct(","):
            self.take()
            if len(columns) >= MAX_COLUMNS:
                raise self.fail(f"at most {MAX_COLUMNS} columns")
            columns.append(self.column())
        return tuple(columns)

    def column(self) -> Column:
        token = self.token
        after = self.tokens[self.i + 1] if token.kind != "end" else token
        # An aggregate is a name and '(': a field may be called count or min too.
        opens = after.kind == "punct" and after.text == "("
        if token.kind == "word" and token.text.lower() in AGGREGATES and opens:
            self.take()
            self.take()
            aggregate = token.text.lower()
            if self.at_punct("*"):
                if aggregate != "count":
                    raise self.fail(f"a field ({aggregate}(*) is not defined)")
                self.take()
                name = "*"
            else:
                name = self.field()
            self.expect_punct(")")
            return Column(name, aggregate, token.position)
        return Column(
            self.field("a field, an aggregate such as count(*), or *"), None, token.position
        )

    def sources(self) -> tuple[Source, ...]:
        sources = [self.source()]
        while self.at_punct(","):
            self.take()
            sources.append(self.source())
        return tuple(sources)

    def source(self) -> Source:
        token = self.token
        if self.at_punct("*"):
            self.take()
            return Source("*", token.position)
        if token.kind in ("string", "quoted") and token.text:
            self.take()
            return Source(token.text, token.position)
        if token.kind == "word" and token.keyword is None:
            self.take()
            return Source(token.text, token.position)
        raise self.fail("a source (a process name, *, or events)")

    def field(self, expected: str = "a field name") -> str:
        token = self.token
        if token.kind == "quoted" and token.text:
            self.take()
            return token.text
        if token.kind == "word" and token.keyword is None and _FIELD.fullmatch(token.text):
            self.take()
            return token.text
        raise self.fail(expected)

    def integer(self) -> int:
        token = self.token
        if token.kind == "word" and token.text.isascii() and token.text.isdigit():
            value = int(token.text)
            if value <= MAX_LIMIT:
                self.take()
                return value
        raise self.fail(f"a whole number from 0 to {MAX_LIMIT}")

    def time(self) -> float:
        token = self.token
        if token.kind in ("word", "string"):
            moment = parse_time(token.text, self.now)
            if moment is not None:
                self.take()
                return moment
        raise self.fail("a time: RFC 3339 (2026-11-23T10:00:00Z) or a duration (30s 5m 2h 1d)")

    def groups(self) -> tuple[Group, ...]:
        groups = [self.group()]
        while self.at_punct(","):
            self.take()
            groups.append(self.group())
        if sum(1 for g in groups if g.bucket is not None) > 1:
            raise self.fail("at most one time bucket in GROUP BY", self.tokens[self.i - 1])
        return tuple(groups)

    def group(self) -> Group:
        token = self.token
        if token.kind == "word":
            bucket = parse_duration(token.text)
            if bucket is not None:
                if bucket < 0.001:
                    raise self.fail("a time bucket of 1ms or more")
                self.take()
                return Group(bucket=bucket, text=token.text)
        name = self.field("a time bucket (1m) or a field")
        return Group(field=name, text=name)

    def order(self) -> tuple[str, bool]:
        token = self.token
        if token.kind == "word" and token.text.lower() in AGGREGATES:
            column = self.column()
            name = column.name
        else:
            name = self.field("a field or an aggregate to order by")
        descending = False
        if self.at_keyword("asc", "desc"):
            descending = self.take().text.lower() == "desc"
        return name, descending

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"an expression nested at most {MAX_DEPTH} deep")
        operands = [self.conjunction()]
        while self.at_keyword("or"):
            self.take()
            operands.append(self.conjunction())
        self.depth -= 1
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Expr:
        operands = [self.negation()]
        while self.at_keyword("and"):
            self.take()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self) -> Expr:
        if self.at_keyword("not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"an expression nested at most {MAX_DEPTH} deep")
            operand = self.negation()
            self.depth -= 1
            return Not(operand)
        if self.at_punct("("):
            self.take()
            inner = self.expr()
            self.expect_punct(")", "')' or AND/OR")
            return inner
        return self.predicate()

    def predicate(self) -> Expr:
        start = self.token.position
        name = self.field("a field name, NOT or '('")
        negated = False
        if self.at_keyword("not"):
            self.take()
            negated = True
            if not self.at_keyword(*TEXT_OPERATORS, "in", "exists"):
                raise self.fail("CONTAINS, STARTSWITH, MATCHES, IN or EXISTS after NOT")
        token = self.token
        result: Expr
        if token.kind == "punct" and token.text in COMPARISONS:
            self.take()
            result = Compare(name, token.text, self.value(), start)
        elif token.keyword in TEXT_OPERATORS:
            self.take()
            result = self.text_operator(name, token.keyword or "", start)
        elif token.keyword == "in":
            self.take()
            self.expect_punct("(", "'(' and a list of values")
            values = [self.value()]
            while self.at_punct(","):
                self.take()
                if len(values) >= MAX_IN_VALUES:
                    raise self.fail(f"at most {MAX_IN_VALUES} values in IN (...)")
                values.append(self.value())
            self.expect_punct(")", "',' or ')'")
            result = In(name, tuple(values), start)
        elif token.keyword == "exists":
            self.take()
            result = Exists(name, start)
        else:
            raise self.fail("an operator (= != > >= < <= CONTAINS STARTSWITH MATCHES IN EXISTS)")
        return Not(result) if negated else result

    def text_operator(self, name: str, op: str, start: int) -> Text:
        token = self.token
        if token.kind != "string":
            raise self.fail("a quoted string")
        self.take()
        pattern = None
        if op == "matches":
            try:
                pattern = compile_pattern(token.text)
            except (re2.error, UnicodeEncodeError) as exc:
                raise QuerySyntaxError(
                    f"not a regular expression RE2 takes: {_re2_reason(exc)}",
                    self.text,
                    token.position,
                    "a regular expression",
                ) from None
        return Text(name, op, token.text, pattern, start)

    def value(self) -> object:
        token = self.token
        if token.kind == "string":
            self.take()
            return token.text
        if token.kind == "word":
            word = token.text.lower()
            if word in ("true", "false", "null"):
                self.take()
                return {"true": True, "false": False, "null": None}[word]
            if _NUMBER.fullmatch(token.text):
                self.take()
                number = float(token.text)
                if (
                    number.is_integer()
                    and abs(number) < 2**63
                    and "." not in token.text
                    and "e" not in word
                ):
                    return int(token.text)
                return number
        raise self.fail("a value (a quoted string, a number, true, false or null)")


def parse(text: str, now: float | None = None) -> Query:
    """The query in ``text``; relative times (``SINCE 5m``) count back from ``now`` (default:
    the current time). Raises :class:`QuerySyntaxError` (only) when it is not a query."""
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(
            f"a query of {len(text)} characters (at most {MAX_QUERY_CHARS})",
            text,
            MAX_QUERY_CHARS,
            "a shorter query",
        )
    parser = _Parser(text, time.time() if now is None else now)
    return parser.query()


def parse_where(text: str, now: float | None = None) -> Expr:
    """The WHERE part alone (``logs --where``, the log view's ``?`` filter)."""
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(
            f"an expression of {len(text)} characters (at most {MAX_QUERY_CHARS})",
            text,
            MAX_QUERY_CHARS,
            "a shorter expression",
        )
    parser = _Parser(text, time.time() if now is None else now)
    expr = parser.expr()
    if parser.token.kind != "end":
        raise parser.fail("AND, OR or the end of the expression")
    return expr


def compile_pattern(text: str) -> Callable[[str], object]:
    """MATCHES' regular expression as a search: truthy where ``text`` matches anywhere.

    Compiled by RE2, which matches in time linear in the line whatever the pattern: Python's
    ``re`` backtracks, and ``(a+)+$`` over a line of 40 ``a`` s and a ``!`` held the GIL for
    minutes, freezing the whole console (capture, the HTTP API, the TUI) for one query of a
    read-only key. RE2's syntax is Python's less backreferences and lookaround (refused here as
    a syntax error); its ``\\d`` and ``\\w`` are ASCII. A ``Set`` of one pattern answers only
    whether it matched, without the spans a ``search`` works out: 2-5x faster per line.
    """
    options = re2.Options()
    options.log_errors = False  # RE2 would write to the terminal the TUI draws on
    re2.compile(text, options)  # for the reason when it does not compile (a Set says none)
    matcher = re2.Set.SearchSet(options)
    matcher.Add(text)
    matcher.Compile()
    match = matcher.Match

    def search(line: str) -> object:
        try:
            return match(line)
        except UnicodeEncodeError:  # a lone surrogate (from a JSON escape) is no UTF-8
            return match(line.encode("utf-8", "surrogatepass"))

    return search


def _re2_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return "a lone surrogate is not a character"
    reason = exc.args[0] if exc.args else exc
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)

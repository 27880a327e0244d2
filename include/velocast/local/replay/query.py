"""The request parameters of the replay's data endpoints, parsed into a ``Query``.

``where`` accepts the ODSQL subset ``date <op> '<iso>'`` (or ``date'<iso>'``) and
``id_compteur = '<id>'`` joined by ``AND``; ``order_by``, ``select``, ``timezone`` and the integer
parameters are checked like the real API does. Anything else raises ``ApiError`` (a 400).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from velocast.local.replay.data import FIELDS, INT64_MAX, INT64_MIN, LABELS, Query, datetime_to_ns

ORDERABLE = ("date", "id_compteur", "sum_counts")


class ApiError(Exception):
    """A 400 in the real API's shape."""

    def __init__(self, message: str, error_code: str = "InvalidRESTParameterError") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>>=|<=|!=|=|<|>)
    | (?P<datelit>date\s*(?:'[^']*'|"[^"]*"))
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<ident>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S+)
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_DATE_PREFIX = re.compile(r"^date\s*", re.IGNORECASE)


def parse_timezone(value: str | None) -> ZoneInfo | None:
    if value is None or value.upper() in ("UTC", "ETC/UTC", "Z", "GMT"):
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(f"Invalid value for timezone parameter: unknown time zone {value!r}") from exc


def parse_instant(text: str, tz: ZoneInfo | None) -> int:
    """An ISO date or datetime literal as ns since the epoch; naive values are in the request's time zone."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ApiError(f"Invalid date literal {text!r}: expected ISO 8601", "ODSQLError") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz or UTC)
    # Clamped so that far-away literals (year 9999) neither overflow int64 nor the +1 of `<=`.
    return min(max(datetime_to_ns(parsed), INT64_MIN + 1), INT64_MAX - 1)


def _tokens(where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(where):
        kind = match.lastgroup
        if kind is None:
            continue
        out.append((kind, match.group(kind)))
    return out


def parse_where(where: str, query: Query) -> None:
    """Apply an ODSQL subset: ``<field> <op> <literal> [AND ...]`` on ``date`` and ``id_compteur``."""
    tokens = _tokens(where)
    if not tokens:
        return
    conditions: list[list[tuple[str, str]]] = [[]]
    for kind, text in tokens:
        if kind == "ident" and text.upper() == "AND":
            conditions.append([])
        else:
            conditions[-1].append((kind, text))
    for condition in conditions:
        shape = [kind for kind, _ in condition]
        if shape not in (["ident", "op", "str"], ["ident", "op", "datelit"]):
            text = " ".join(t for _, t in condition) or "(empty)"
            raise ApiError(
                f"ODSQL query is malformed: unsupported condition {text!r} in where={where!r}. The replay "
                "supports `date <op> '<iso>'`, `date <op> date'<iso>'` and `id_compteur = '<id>'` "
                "joined by AND.",
                "ODSQLError",
            )
        name, op, literal = (text for _, text in condition)
        name = name.strip("`")
        value = _DATE_PREFIX.sub("", literal)[1:-1]
        if name == "date":
            _apply_date(query, op, parse_instant(value, query.tz))
        elif name == "id_compteur" and op == "=":
            if query.counter is not None and query.counter != value:
                query.empty = True
            query.counter = value
        else:
            raise ApiError(
                f"ODSQL query is malformed: unsupported filter `{name} {op}` in where={where!r}", "ODSQLError"
            )


def _apply_date(query: Query, op: str, ns: int) -> None:
    if op == ">=":
        query.lo = max(query.lo, ns)
    elif op == ">":
        query.lo = max(query.lo, ns + 1)
    elif op == "<":
        query.hi = min(query.hi, ns)
    elif op == "<=":
        query.hi = min(query.hi, ns + 1)
    elif op == "=":
        query.lo, query.hi = max(query.lo, ns), min(query.hi, ns + 1)
    else:
        raise ApiError(f"ODSQL query is malformed: operator {op!r} is not supported on date", "ODSQLError")


def parse_order_by(text: str) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        if len(words) > 2 or words[0] not in ORDERABLE or direction not in ("asc", "desc"):
            raise ApiError(
                f"ODSQL query is malformed: unsupported order_by {item!r} "
                f"(use {', '.join(ORDERABLE)} [asc|desc])",
                "ODSQLError",
            )
        order.append((words[0], direction == "desc"))
    return order


def parse_select(text: str) -> tuple[str, ...]:
    names = tuple(filter(None, (part.strip().strip("`") for part in text.split(","))))
    if not names or names == ("*",):
        return FIELDS
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise ApiError(
            f"ODSQL query is malformed: unknown field(s) in select: {', '.join(unknown)}", "ODSQLError"
        )
    return names


def parse_int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(f"Invalid value for {name} parameter: {raw!r} is not an integer") from exc


def parse_query(params: dict[str, str], until: int) -> Query:
    query = Query(tz=parse_timezone(params.get("timezone")), until=until)
    parse_where(params.get("where", ""), query)
    query.order = parse_order_by(params.get("order_by", ""))
    query.fields = parse_select(params.get("select", ""))
    return query

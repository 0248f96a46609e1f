"""The query allowlist: one SELECT over the lake's tables, checked on DuckDB's own parse tree.

``POST /query`` SQL is parsed by DuckDB (``json_serialize_sql``, the parser the query
would run through), and the tree is walked with allowlists, never regexes:

* exactly one statement, a SELECT (set operations and CTEs of SELECTs included);
* tables: the lake's own tables (``lake.main.*``, unqualified or qualified) and the
  query's CTEs; nothing else: no system views, no file paths or URLs (replacement
  scans), no other catalog (the metadata database, ``system``, ``temp``);
* table functions: ``lake.snapshots()`` (snapshot listing) and ``range``/``unnest``;
  time travel (``AT (VERSION => n)``) is part of a table reference and stays possible;
* functions: the scalar, aggregate and window functions below; every other function
  (settings, secrets, files, HTTP, postgres_*, ducklake_* maintenance, sequences,
  ``getenv``...) is refused;
* expression kinds: the usual ones; parameters and anything unknown are refused.

A refusal is a :class:`BadRequest` that names what was refused; a table that is not
in the lake is a :class:`NotFound`.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Iterable

import duckdb

from .errors import BadRequest, NotFound

CATALOG = "lake"
SCHEMA = "main"

OPERATORS = {"+", "-", "*", "/", "//", "%", "**", "^", "||", "~~", "!~~", "~~*", "!~~*",
             "~~~", "!~~~", "&", "|", "<<", ">>", "!", "@", "array_extract", "list_extract",
             "array_slice", "list_slice", "struct_extract", "list_value", "struct_pack", "row",
             "main.list_value"}
SCALAR = {
    # strings
    "upper", "lower", "ucase", "lcase", "length", "len", "strlen", "char_length", "substr",
    "substring", "concat", "concat_ws", "replace", "trim", "ltrim", "rtrim", "left", "right",
    "strpos", "instr", "position", "contains", "starts_with", "ends_with", "prefix", "suffix",
    "split_part", "string_split", "str_split", "regexp_matches", "regexp_replace",
    "regexp_extract", "regexp_full_match", "like_escape", "ilike_escape", "reverse",
    "initcap", "md5", "sha256", "hash", "ascii", "chr", "unicode",
    # numbers
    "abs", "round", "floor", "ceil", "ceiling", "trunc", "sqrt", "cbrt", "ln", "log", "log2",
    "log10", "exp", "power", "pow", "mod", "sign", "greatest", "least", "pi", "degrees",
    "radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "isnan", "isinf",
    "isfinite", "even", "gcd", "lcm", "factorial", "random", "bit_count",
    # dates and times
    "date_trunc", "datetrunc", "date_part", "datepart", "extract", "year", "month", "day",
    "hour", "minute", "second", "millisecond", "microsecond", "week", "weekday", "dayofweek",
    "dayofyear", "dayofmonth", "quarter", "isodow", "yearweek", "epoch", "epoch_ms",
    "strftime", "strptime", "try_strptime", "date_diff", "datediff", "date_sub", "datesub",
    "date_add", "to_timestamp", "make_date", "make_time", "make_timestamp", "age",
    "last_day", "monthname", "dayname", "now", "current_date", "current_timestamp",
    "get_current_timestamp", "today", "to_days", "to_hours", "to_minutes", "to_seconds",
    "to_months", "to_years", "to_weeks", "to_milliseconds", "to_microseconds", "time_bucket",
    # conditionals, types, lists, structs
    "coalesce", "nullif", "ifnull", "if", "typeof", "list_contains", "list_has",
    "array_contains", "list_position", "list_sort", "array_sort", "list_distinct",
    "list_unique", "list_reverse", "list_transform", "list_filter",
    "array_length", "array_to_string", "list_concat", "array_concat",
    "cardinality", "struct_keys", "map", "map_keys", "map_values", "map_extract",
    "element_at", "unnest", "uuid", "gen_random_uuid",
}
# Not allowed, on purpose: scalar range()/generate_series() and format()/printf() build
# values outside DuckDB's memory accounting; list_reduce doubles strings; levenshtein is
# quadratic inside one chunk, where the timeout's interrupt cannot stop it;
# list_aggregate calls any aggregate named in a string. (Review of issue 10.)
AGGREGATE = {
    "count", "count_star", "sum", "avg", "mean", "min", "max", "median", "mode",
    "quantile", "quantile_cont", "quantile_disc", "percentile_cont", "percentile_disc",
    "string_agg", "group_concat", "listagg", "list", "array_agg", "any_value", "first",
    "last", "arg_min", "arg_max", "argmin", "argmax", "min_by", "max_by", "stddev",
    "stddev_samp", "stddev_pop", "variance", "var_samp", "var_pop", "bool_and", "bool_or",
    "approx_count_distinct", "approx_quantile", "corr", "covar_pop", "covar_samp",
    "count_if", "countif", "sum_no_overflow", "product", "histogram", "entropy", "kurtosis",
    "skewness", "regr_slope", "regr_intercept", "regr_r2", "fsum", "favg", "bit_and",
    "bit_or", "bit_xor",
}
WINDOW = {"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag",
          "lead", "first_value", "last_value", "nth_value"}
FUNCTIONS = OPERATORS | SCALAR | AGGREGATE | WINDOW
TABLE_FUNCTIONS = {(CATALOG, "snapshots"), ("", "range"), ("", "generate_series"),
                   ("", "unnest")}
EXPRESSION_CLASSES = {"FUNCTION", "WINDOW", "COLUMN_REF", "CONSTANT", "CAST", "COMPARISON",
                      "CONJUNCTION", "OPERATOR", "CASE", "BETWEEN", "STAR", "SUBQUERY",
                      "LAMBDA", "LAMBDA_REF", "COLLATE", "POSITIONAL_REFERENCE"}
NODE_TYPES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
TABLE_REF_TYPES = {"BASE_TABLE", "TABLE_FUNCTION", "JOIN", "SUBQUERY", "EMPTY",
                   "EXPRESSION_LIST"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_parser = duckdb.connect(":memory:")   # parses only: nothing attached, nothing loaded
_parser_lock = threading.Lock()


def parse(sql: str) -> dict[str, Any]:
    """DuckDB's own parse tree of ``sql`` (raises BadRequest for non-SELECTs)."""
    if not isinstance(sql, str) or not sql.strip():
        raise BadRequest("sql must be a non-empty string")
    with _parser_lock:
        raw = _parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    doc = json.loads(raw)
    if doc.get("error"):
        msg = doc.get("error_message", "")
        if "Only SELECT" in msg:
            raise BadRequest("only one read-only SELECT over the lake's tables is allowed")
        raise BadRequest(f"invalid SQL: {msg}")
    statements = doc.get("statements") or []
    if len(statements) != 1:
        raise BadRequest(f"exactly one statement is allowed, got {len(statements)}")
    return statements[0]


def check_query(sql: str, lake_tables: Iterable[str]) -> str:
    """``sql`` if it is one allowed SELECT over ``lake_tables``; else BadRequest/NotFound."""
    check_tree(parse(sql), lake_tables)
    return sql


def check_tree(tree: dict[str, Any], lake_tables: Iterable[str]) -> None:
    """The allowlist on a tree from :func:`parse` (so a caller parses once)."""
    _walk(tree, {t.lower() for t in lake_tables}, frozenset())


def _walk_ctes(node: dict, tables: set[str], ctes: frozenset[str]) -> frozenset[str]:
    """Walk a query node's WITH clause with DuckDB's scoping, and return the names its
    body sees. A CTE sees the CTEs around it and the ones before it; its own name only
    when it is recursive (otherwise DuckDB resolves that name outside: a system view)."""
    seen = set(ctes)
    for entry in (node.get("cte_map") or {}).get("map") or []:
        name = str(entry.get("key", "")).lower()
        body = (entry.get("value") or {}).get("query") or {}
        recursive = (body.get("node") or {}).get("type") == "RECURSIVE_CTE_NODE"
        _walk(body, tables, frozenset(seen | ({name} if recursive else set())))
        seen.add(name)
    return frozenset(seen)


def _walk(obj: Any, tables: set[str], ctes: frozenset[str]) -> None:
    if isinstance(obj, list):
        for v in obj:
            _walk(v, tables, ctes)
        return
    if not isinstance(obj, dict):
        return
    cls, typ = obj.get("class"), obj.get("type")
    if cls is not None:
        if cls not in EXPRESSION_CLASSES:
            raise BadRequest(f"expression {str(cls).lower()} is not allowed in a query")
        if cls in ("FUNCTION", "WINDOW"):
            _check_function(obj)
    elif "modifiers" in obj and typ is not None:      # a query node
        if typ not in NODE_TYPES:
            raise BadRequest(f"query form {typ} is not allowed")
        ctes = _walk_ctes(obj, tables, ctes)
        for k, v in obj.items():
            if k != "cte_map":
                _walk(v, tables, ctes)
        return
    elif "sample" in obj and typ is not None:       # a table reference
        if typ not in TABLE_REF_TYPES:
            raise BadRequest(f"table reference {typ} is not allowed (only the lake's tables)")
        if typ == "BASE_TABLE":
            _check_table(obj, tables, ctes)
        elif typ == "TABLE_FUNCTION":
            fn = obj.get("function") or {}
            _check_table_function(fn)
            _walk(fn.get("children"), tables, ctes)
            _walk([v for k, v in obj.items() if k != "function"], tables, ctes)
            return
    for k, v in obj.items():
        _walk(v, tables, ctes)


def _check_function(fn: dict) -> None:
    name = str(fn.get("function_name", "")).lower()
    catalog, schema = str(fn.get("catalog", "")).lower(), str(fn.get("schema", "")).lower()
    if name not in FUNCTIONS or catalog not in ("", "system") or schema not in ("", "main"):
        shown = ".".join(p for p in (catalog, schema, name) if p)
        raise BadRequest(f"function {shown}() is not allowed in a query")


def _check_table_function(fn: dict) -> None:
    name = str(fn.get("function_name", "")).lower()
    schema = str(fn.get("schema", "")).lower()
    extras = fn.get("filter") or fn.get("distinct") or \
        ((fn.get("order_bys") or {}).get("orders") or [])
    if (schema, name) not in TABLE_FUNCTIONS or str(fn.get("catalog", "")) or extras:
        shown = f"{schema}.{name}" if schema else name
        raise BadRequest(f"table function {shown}() is not allowed in a query "
                         f"(allowed: {CATALOG}.snapshots(), range(), unnest())")


def _check_table(ref: dict, tables: set[str], ctes: set[str]) -> None:
    catalog = str(ref.get("catalog_name", ""))
    schema = str(ref.get("schema_name", ""))
    name = str(ref.get("table_name", ""))
    shown = ".".join(p for p in (catalog, schema, name) if p)
    if not _IDENT.fullmatch(name):
        raise BadRequest(f"table {shown!r} is not allowed: only the lake's tables can be read")
    if not catalog and not schema and name.lower() in ctes:
        return
    if not catalog and schema.lower() == CATALOG:   # lake.t: the lake's default schema
        catalog, schema = CATALOG, SCHEMA
    if catalog.lower() not in ("", CATALOG) or schema.lower() not in ("", SCHEMA) or \
            (catalog and not schema):
        raise BadRequest(f"table {shown} is not allowed: only {CATALOG}.{SCHEMA} tables can be read")
    if name.lower() not in tables:
        raise NotFound(f"table {name!r} does not exist in the lake")

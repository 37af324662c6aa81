"""Security: SQL is never built from values, inputs that name things are validated against strict
patterns, and nothing secret is in the repository or in what a run logs.

The SQL check reads the project's Python (not the tests) as syntax trees: the SQL argument of every
`execute`/`sql`/`query` call and of the project's own SQL-taking functions (`read_sql`,
`read_table`'s where and order_by, a transaction's `replace`, ...) must be a string constant, or
built (f-string, +, a conditional) only from constants, from local or module names bound to such,
from names a `for` loop takes from a literal tuple, or from the parameters listed in
`SQL_PARAMETERS` with the reason they are safe. Values go in `?` parameters.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import requests
import yfinance

from forecast_core.config import validate_path, validate_ticker
from forecast_core.errors import ConfigError
from tests.reliability.ledger import record
from tests.support.yahoo import RUN, FakeYahoo, defs_for, fresh_copy, ingest, raises, truth

#: As in test_provider_faults.py: the retry policy's delays are recorded, not slept.
pytestmark = pytest.mark.usefixtures("retry_delays")

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("forecast_core", "forecast_assets", "warehouse", "bench")

#: Calls whose first argument is SQL.
SQL_CALLS = {"execute", "executemany", "sql", "query", "read_sql", "read_replica_sql", "_execute_with_frame"}
#: The project's functions that take SQL fragments or table names: argument positions and keywords.
SQL_ARGS = {
    "read_table": ((1, "where"), (4, "order_by")),
    "replace": ((0, "table"), (2, "where")),
    "replace_table": ((0, "table"),),
    "store_prices": ((1, "where"),),
    "read": ((0, "sql"),),
}
#: (function, parameter) -> why that parameter may appear in SQL text.
SQL_PARAMETERS = {
    ("replace", "table"): "checked against WRITABLE_TABLES by _check_table first",
    ("replace", "where"): "a SQL fragment; its callers are checked here like any SQL argument",
    ("replace_table", "table"): "checked against WRITABLE_TABLES by _check_table first",
    ("store_prices", "where"): "a SQL fragment; its callers are checked here like any SQL argument",
    ("read", "sql"): "Writer.read's query; its callers are checked here like any SQL argument",
    ("_insert", "table"): "only called by replace, after _check_table",
    ("_execute_with_frame", "sql"): "built by replace_table/_insert from checked table names",
    ("read_sql", "sql"): "the SQL argument; its callers are checked here",
    ("read_replica_sql", "sql"): "the SQL argument; its callers are checked here",
    ("read_table", "table"): "checked against READABLE by _check_table first",
    ("read_table", "where"): "a SQL fragment; its callers are checked here",
    ("read_table", "order_by"): "an ORDER BY list; its callers are checked here",
}
#: Functions whose result is packaged SQL text (warehouse/schema.sql, views.sql).
SQL_FILES = {"_sql"}
#: Other (function, expression) pairs that are safe inside SQL, and why.
TRUSTED = {
    ("_replace", "table"): "checked against WRITABLE_TABLES by replace's _check_table first",
    ("_replace", "where"): "a SQL fragment; replace's callers are checked here like any SQL argument",
    ("features", "reads.IN_TICKERS"): "the constant predicate warehouse.reads.IN_TICKERS (tickers bound)",
    (
        "_backtest_parts",
        "reads.IN_TICKERS",
    ): "the constant predicate warehouse.reads.IN_TICKERS (tickers bound)",
    ("prices", "where"): "reads._dated: the constant predicates `date <= ?` and IN_TICKERS, values bound",
    (
        "prices_as_of",
        "where",
    ): "reads._dated: the constant predicates `date <= ?` and IN_TICKERS, values bound",
    ("features", "where"): "reads._dated: the constant predicates `date <= ?` and IN_TICKERS, values bound",
    ("targets", "where"): "reads._dated: the constant predicates `date <= ?` and IN_TICKERS, values bound",
    (
        "_feature_tickers",
        "where",
    ): "reads._dated: the constant predicates `date <= ?` and IN_TICKERS, values bound",
    ("_store", "where"): "store_prices' where; its callers are checked here like any SQL argument",
    ("_replace_table", "table"): "checked against WRITABLE_TABLES by replace_table first",
    (
        "_check_unique",
        """', '.join((f'"{c}"' for c in key))""",
    ): "the quoted key columns of warehouse.io.UNKEYED, a constant (its callers pass UNKEYED[table])",
    ("load_extensions", "_extension(package, name)"): "an extension file found by importlib in site-packages",
    ("attach", "lake.catalog"): "validated by lake.load: no quotes, semicolons or control characters",
    ("attach", "lake.data_path"): "validated by lake.load: no quotes, semicolons or control characters",
    ("ensure_schema", "translate(schema_sql)"): "the packaged schema.sql, rewritten for DuckLake",
    ("ensure_schema", "views_sql"): "the packaged views.sql",
    ("_catalog", "SCHEMA_SQL.read_text()"): "the packaged schema.sql",
    ("_counts", "sql"): "a lambda over the constant queries below it",
    ("_matching", "table"): "only called by _replace, after _check_table",
    ("_matching", "where"): "replace's where; its callers are checked here like any SQL argument",
    (
        "_seed",
        "slot.with_name(slot.stem + '.tmp.duckdb')",
    ): "a slot path beside the warehouse, validated by warehouse_path (no quotes)",
    ("_seed", "_identifier(main)"): "current_database(), double-quoted by _identifier, which refuses a quote",
    ("_copy_tables", "source"): "current_database(), double-quoted by _identifier, which refuses a quote",
    (
        "_copy_tables",
        "_identifier(table)",
    ): "a table name from the warehouse's own catalog, double-quoted by _identifier, which refuses a quote",
    (
        "_copy_tables",
        "_identifier(column)",
    ): "a column name from the warehouse's own catalog, double-quoted by _identifier, which refuses a quote",
    (
        "_copy_tables",
        "sql_literal(comment)",
    ): "a comment from the warehouse's own catalog as a string literal, quotes doubled by sql_literal",
    (
        "memory_limit",
        "sql_literal(limit)",
    ): "SEED_MEMORY_LIMIT or STAGED_MEMORY_LIMIT (constants) as a string literal, quotes doubled by sql_literal",
    (
        "memory_limit",
        "sql_literal(prior)",
    ): "DuckDB's own display of its memory_limit as a string literal, quotes doubled by sql_literal",
    ("_sync_table", "table"): "checked against WRITABLE_TABLES by _check_table first",
    (
        "_sync_table",
        "main",
    ): "current_database(): the warehouse file's stem, a path validated by warehouse_path",
    (
        "_sync_table",
        "where",
    ): "the logged predicates of replace calls, which are checked here; the log is the warehouse's own table",
    ("_attach", "slot"): "a slot path beside the warehouse, validated by warehouse_path (no quotes)",
    ("_call", "sql"): "the SQL argument; its callers are checked here",
    (
        "serving_panel",
        "_select_list(picked)",
    ): "names of the features table's own columns (its schema), double-quoted by _quoted, which refuses a quote",
    (
        "serving_panel",
        "_all_finite(names)",
    ): "names of the features table's own columns (its schema), double-quoted by _quoted, which refuses a quote",
}


def python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@dataclasses.dataclass
class Scope:
    function: str
    names: dict[str, list[ast.AST]]  # local (then module) name -> every expression bound to it


#: What a name is bound to when the binding cannot be followed (never safe).
UNKNOWN = ast.Name(id="<unknown value>")


def _bind(target: ast.AST, value: ast.AST, names: dict[str, list[ast.AST]]) -> None:
    """`a, b = x, y` binds a to x and b to y; a conditional binds both branches."""
    if isinstance(target, ast.Name):
        names.setdefault(target.id, []).append(value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
            for t, v in zip(target.elts, value.elts):
                _bind(t, v, names)
        elif isinstance(value, ast.IfExp):
            _bind(target, value.body, names)
            _bind(target, value.orelse, names)
        else:
            for t in target.elts:
                _bind(t, UNKNOWN, names)


def _literal(node: ast.AST, names: dict[str, list[ast.AST]]) -> ast.AST:
    """A name bound once to a literal is that literal."""
    if isinstance(node, ast.Name) and len(names.get(node.id, [])) == 1:
        return names[node.id][0]
    return node


def _loop_items(iterable: ast.AST, names: dict[str, list[ast.AST]]) -> list[ast.AST] | None:
    """What a `for` loop over a literal (tuple, list, a dict's keys, values or items) takes."""
    if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) and not iterable.args:
        mapping = _literal(iterable.func.value, names)
        if isinstance(mapping, ast.Dict) and None not in mapping.keys:
            pairs = list(zip(mapping.keys, mapping.values))
            return {
                "items": [ast.Tuple(elts=[k, v]) for k, v in pairs],
                "keys": [k for k, _ in pairs],
                "values": [v for _, v in pairs],
            }.get(iterable.func.attr)
        return None
    literal = _literal(iterable, names)
    if isinstance(literal, (ast.Tuple, ast.List, ast.Set)):
        return list(literal.elts)
    return None


def _bindings(body: list[ast.stmt], outer: dict[str, list[ast.AST]]) -> dict[str, list[ast.AST]]:
    """Names bound in `body` (not in nested functions or classes) -> the expressions bound."""
    names: dict[str, list[ast.AST]] = {}

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Assign):
            for target in node.targets:
                _bind(target, node.value, names)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            _bind(
                node.target, node.value if isinstance(node, ast.AnnAssign) and node.value else UNKNOWN, names
            )
        elif isinstance(node, (ast.For, ast.comprehension)):
            items = _loop_items(node.iter, {**outer, **names})
            for item in items if items is not None else [UNKNOWN]:
                _bind(node.target, item, names)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            _bind(node.optional_vars, UNKNOWN, names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in body:
        visit(stmt)
    return names


def _sqlalchemy_insert(node: ast.AST) -> bool:
    """`SomeTable.insert()` and methods chained on it (`.returning(...)`): a SQLAlchemy statement
    object, whose values SQLAlchemy binds as parameters, not SQL text."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "insert" and not node.args:
            base = node.func.value
            return isinstance(base, ast.Name) and base.id.endswith("Table")
        node = node.func.value
    return False


def unsafe_parts(node: ast.AST, scope: Scope, seen: frozenset[str] = frozenset()) -> list[str]:
    """The parts of a SQL expression that are not provably constant or allow-listed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return []
    if isinstance(node, ast.JoinedStr):
        return [
            p
            for v in node.values
            if isinstance(v, ast.FormattedValue)
            for p in unsafe_parts(v.value, scope, seen)
        ]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return unsafe_parts(node.left, scope, seen) + unsafe_parts(node.right, scope, seen)
    if isinstance(node, ast.IfExp):
        return unsafe_parts(node.body, scope, seen) + unsafe_parts(node.orelse, scope, seen)
    if _sqlalchemy_insert(node) or (scope.function, ast.unparse(node)) in TRUSTED:
        return []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SQL_FILES:
        return [] if all(isinstance(a, ast.Constant) for a in node.args) else [ast.unparse(node)]
    if isinstance(node, ast.Name):
        if (scope.function, node.id) in SQL_PARAMETERS:
            return []
        if node.id in scope.names and node.id not in seen:
            return [p for value in scope.names[node.id] for p in unsafe_parts(value, scope, seen | {node.id})]
    return [ast.unparse(node)]


def sql_arguments(call: ast.Call, transactions: set[str]) -> list[ast.AST]:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in SQL_CALLS:
        spots: tuple[tuple[int, str], ...] = ((0, "query"), (0, "sql"))
    elif name in (
        "replace",
        "replace_table",
        "store_prices",
    ):  # a Writer's (`with transaction() as w`), not str.replace
        receiver = func.value if isinstance(func, ast.Attribute) else None
        spots = SQL_ARGS[name] if isinstance(receiver, ast.Name) and receiver.id in transactions else ()
    elif name in SQL_ARGS:
        spots = SQL_ARGS[name]
    else:
        return []
    found = [call.args[i] for i in sorted({i for i, _ in spots}) if i < len(call.args)]
    found += [k.value for k in call.keywords if k.arg in {kw for _, kw in spots}]
    return found


def sql_findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module_names = _bindings(tree.body, {})
    findings = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in [tree, *functions]:
        body = function.body
        local = _bindings(body, module_names) if not isinstance(function, ast.Module) else {}
        params = (
            set()
            if isinstance(function, ast.Module)
            else {
                a.arg
                for a in (
                    *function.args.posonlyargs,
                    *function.args.args,
                    *function.args.kwonlyargs,
                    function.args.vararg,
                    function.args.kwarg,
                )
                if a is not None
            }
        )
        scope = Scope(
            getattr(function, "name", "<module>"),
            {
                **{k: v for k, v in module_names.items() if k not in params},
                **{k: v for k, v in local.items() if k not in params},
            },
        )
        transactions = {
            item.optional_vars.id
            for n in ast.walk(function)
            if isinstance(n, ast.With)
            for item in n.items
            if isinstance(item.optional_vars, ast.Name)
            and isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", None) == "transaction"
        }
        calls = [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
        if not isinstance(function, ast.Module):  # calls in nested functions are visited with them
            nested = {
                id(n)
                for f in ast.walk(function)
                if f is not function and isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)
            }
            calls = [c for c in calls if id(c) not in nested]
        else:
            calls = [
                n
                for stmt in body
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                for n in ast.walk(stmt)
                if isinstance(n, ast.Call)
            ]
        for call in calls:
            for argument in sql_arguments(call, transactions):
                for part in unsafe_parts(argument, scope):
                    where = path.relative_to(ROOT) if ROOT in path.parents else path.name
                    findings.append(f"{where}:{call.lineno} in {scope.function}: SQL built from {part!r}")
    return findings


def test_every_sql_statement_is_a_constant_or_built_from_allow_listed_identifiers() -> None:
    files = python_files()
    assert len(files) > 20
    findings = [f for path in files for f in sql_findings(path)]
    record("security_files_scanned", len(files))
    assert not findings, "\n".join(findings)


def test_the_sql_check_catches_values_in_sql(tmp_path: Path) -> None:
    bad = """
def prices(con, ticker, day):
    con.execute(f"SELECT * FROM raw_prices WHERE ticker = '{ticker}'")
    con.sql("SELECT * FROM raw_prices WHERE date = '%s'" % day)
    read_table("raw_prices", "ticker = '{}'".format(ticker))
    with transaction() as w:
        w.replace("raw_prices", frame, f"ticker = '{ticker}'")
    for t in tickers():
        con.execute(f"DELETE FROM raw_prices WHERE ticker = '{t}'")
    query = "SELECT * FROM raw_prices WHERE ticker = " + repr(ticker)
    read_sql(query)
"""
    good = """
TABLES = ("raw_prices", "forecasts")
COLUMNS = "ticker, date"
def prices(con, ticker):
    order = f" ORDER BY {COLUMNS}" if ticker else ""
    con.execute(f"SELECT {COLUMNS} FROM raw_prices WHERE ticker = ?{order}", [ticker])
    for table, column in (("raw_prices", "date"), ("forecasts", "as_of_date")):
        con.execute(f"DELETE FROM {table} WHERE {column} >= ?", [ticker])
    "a {} b".replace("a", ticker)
"""
    path = tmp_path / "example.py"
    path.write_text(bad)
    assert len(sql_findings(path)) == 6, sql_findings(path)
    path.write_text(good)
    assert sql_findings(path) == []


HOSTILE = [
    "A'B",
    'A"B',
    "AAPL;DROP",
    "AAPL; DROP TABLE raw_prices;--",
    "../etc/passwd",
    "A/B",
    "A\\B",
    "AAPL\n",
    "\nAAPL",
    "AAPL\x00",
    "aapl",
    "",
    " AAPL",
    "A B",
    "$(id)",
    "`id`",
    "A*",
    "A%",
    "A?",
    "ABCDEFGHIJKLMNOP",
]
HOSTILE_PATHS = [
    "prices.csv'; DROP TABLE x; --",
    'a"b.csv',
    "a;b.csv",
    "a\nb.csv",
    "a.csv\n",
    "a\x00.csv",
    "$(rm -rf ~).csv",
    "`id`.csv",
    "a*.csv",
    "a|b.csv",
    "a>b.csv",
    "",
    "a\rb.csv",
]


def test_tickers_and_paths_are_validated_against_strict_patterns() -> None:
    for good in ("AAPL", "BRK-B", "BRK.B", "^GSPC", "EURUSD=X", "7203.T"):
        assert validate_ticker(good) == good
    for bad in HOSTILE:
        with pytest.raises(ConfigError, match="invalid ticker"):
            validate_ticker(bad)
    for good in (
        "prices.csv",
        "/data/yahoo export (2024).csv",
        "C:\\data\\prices.parquet",
        "~/w.duckdb",
        "données/prix.csv",
        "a+b@c,d.csv",
    ):
        assert validate_path(good, "source.path") == good
    for bad in HOSTILE_PATHS:
        with pytest.raises(ConfigError, match="invalid setting source.path"):
            validate_path(bad, "source.path")
    record("security_hostile_names_rejected", len(HOSTILE) + len(HOSTILE_PATHS))


#: Obvious secrets: cloud keys, tokens, private keys, passwords assigned in code, URLs with users.
SECRET_PATTERNS = {
    "AWS access key": r"\bAKIA[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY-----",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "API secret key": r"\bsk-[A-Za-z0-9]{32,}\b",
    "password or token assigned": r"(?i)\b(?:password|passwd|secret|api_?key|access_?token|auth_?token)\b"
    r"\s*[:=]\s*['\"][^'\"\s{}]{8,}['\"]",
    "credentials in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s@'\"{}<>]{3,}@",  # not a {template}
}


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def test_no_secret_in_the_repository() -> None:
    files = repository_files()
    found = []
    for path in files:
        if path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary: the sample parquet
        for what, pattern in SECRET_PATTERNS.items():
            found += [
                f"{path.relative_to(ROOT)}: {what}: {m.group(0)[:12]}..." for m in re.finditer(pattern, text)
            ]
    record("security_files_scanned_for_secrets", len(files))
    assert len(files) > 50
    assert not found, "\n".join(found)


CANARY = "canary-7f3a9c"


def test_no_secret_reaches_the_run_logs(seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider error carrying a session token and proxy credentials (as an HTTP error's URL
    does) is logged, retried and stored in the run's events with both redacted."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://analyst:{CANARY}@proxy.example:8080")
    path = fresh_copy(seeded, tmp_path)
    error = requests.exceptions.HTTPError(
        f"502 Server Error: Bad Gateway for url: https://query2.finance.yahoo.com/v8/finance/chart/KO?"
        f"interval=1d&crumb={CANARY}&token={CANARY} via http://analyst:{CANARY}@proxy.example:8080"
    )
    error.response = requests.Response()
    error.response.status_code = 502
    monkeypatch.setattr(yfinance, "download", FakeYahoo(truth(), raises(error), times=1))
    result = ingest(defs_for(tmp_path), RUN)
    assert result.success
    retried = [e for e in result.all_events if e.is_step_up_for_retry]
    assert retried and "crumb=<redacted>" in dg.serialize_value(retried[0])
    logged = dg.serialize_value(result.all_events)
    stored = path.read_bytes()
    record("security_log_canaries_checked")
    assert CANARY not in logged and CANARY.encode() not in stored

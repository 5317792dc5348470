"""SQL is built only from constants; values always travel as bound parameters ($1, $2, ...).

Every call that sends SQL to Postgres (`execute`, `executemany`, `fetch`, `fetchrow`,
`fetchval`, `prepare`, `cursor`) in the core package and the API is read with `ast`: its SQL
argument must be a string literal, a module-level constant, or an f-string / `+` / `%` /
`.format()` / `.join()` made only of those (or a call of a listed SQL builder with such
arguments). Anything that could carry a value (a parameter, a local variable, an attribute)
fails the test unless it is in ALLOWED with the reason it is safe. A new query that
interpolates a value fails here, naming its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "plugins" / "market_data").rglob("*.py")), *sorted((ROOT / "api").rglob("*.py"))]
SQL_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor"}

ALLOWED = {
    ("plugins/market_data/db.py", "ensure_database"): (
        "CREATE DATABASE takes an identifier, which cannot be bound; _quote_ident admits only "
        "[a-z_][a-z0-9_]{0,62} and quotes it"
    ),
    ("plugins/market_data/db.py", "drop_database"): "DROP DATABASE: the same identifier rule (_quote_ident)",
    ("plugins/market_data/db.py", "apply_migrations"): (
        "runs the numbered migration files of sql/ (repository text, checksummed), not values"
    ),
}
SQL_BUILDERS = {
    ("market_data.notifications", "payload_json"): (
        "json_build_object over a payload Struct's field names (source text); its arguments, "
        "checked here, are the only other text it takes"
    ),
    ("market_data.notifications", "payload_fields"): "a payload Struct's field names (source text)",
}
"""Functions (module, name) whose result is SQL text when every argument is constant."""


class Module:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rel = path.relative_to(ROOT).as_posix()
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants: dict[str, ast.expr] = {}
        self.imported: dict[str, tuple[str, str]] = {}
        """Local name -> (module, name) of `from module import name` at module level."""
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = (node.module, alias.name)
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                self.constants[node.targets[0].id] = node.value
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                self.constants[node.target.id] = node.value

    def constant(
        self,
        node: ast.expr,
        seen: frozenset[str] = frozenset(),
        local: dict[str, list[ast.expr]] | None = None,
        bound: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether `node` can only ever be text written in the source (no runtime value).

        Args:
            local: assignments of the enclosing function (a local name is constant when every
                value assigned to it is).
            bound: loop variables of a comprehension over constants (`f"${i}" for i in range(3)`).
        """
        local = local or {}

        def const(n: ast.expr) -> bool:
            return self.constant(n, seen, local, bound)

        if isinstance(node, ast.Constant):
            return isinstance(node.value, str | int)
        if isinstance(node, ast.Name):
            if node.id in bound:
                return True
            if node.id in seen:
                return False
            if node.id in local:
                return all(self.constant(v, seen | {node.id}, local, bound) for v in local[node.id])
            value = self.constants.get(node.id)
            if value is None and node.id in self.imported:  # a constant of another module of ours
                source = _our_module(self.imported[node.id][0])
                name = self.imported[node.id][1]
                return source is not None and source.constant(
                    ast.Name(name), frozenset({f"{source.rel}:{name}"})
                )
            return value is not None and self.constant(value, seen | {node.id}, local, bound)
        if isinstance(node, ast.JoinedStr):
            return all(const(v.value) if isinstance(v, ast.FormattedValue) else const(v) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
            return const(node.left) and const(node.right)
        if isinstance(node, ast.IfExp):
            return const(node.body) and const(node.orelse)
        if isinstance(node, ast.Tuple | ast.List):
            return all(const(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            return all(k is not None and const(k) for k in node.keys) and all(const(v) for v in node.values)
        if isinstance(node, ast.Subscript):
            return const(node.value) and const(node.slice)
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            names = frozenset(
                t.id for g in node.generators for t in ast.walk(g.target) if isinstance(t, ast.Name)
            )
            return all(const(g.iter) and not g.ifs for g in node.generators) and self.constant(
                node.elt, seen, local, bound | names
            )
        if isinstance(node, ast.Call):
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if isinstance(node.func, ast.Name) and node.func.id in ("len", "range", "enumerate"):
                return all(const(a) for a in arguments)
            if isinstance(node.func, ast.Name) and self.imported.get(node.func.id) in SQL_BUILDERS:
                return all(const(a) for a in arguments)
            # "...".format(CONST, name=CONST) / ", ".join(CONSTANTS) / CONST.strip()
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join", "strip"):
                return const(node.func.value) and all(const(a) for a in arguments)
        return False


def _assignments(function: ast.AST) -> dict[str, list[ast.expr]]:
    out: dict[str, list[ast.expr]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            if node.value is not None:
                out.setdefault(node.target.id, []).append(node.value)
        else:
            # loop targets, `with ... as` names and parameters take runtime values
            targets: list[ast.AST] = []
            if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                targets = [node.target]
            elif isinstance(node, ast.With | ast.AsyncWith):
                targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
            elif isinstance(node, ast.arguments):
                targets = [ast.Name(id=a.arg) for a in [*node.posonlyargs, *node.args, *node.kwonlyargs]]
            for target in targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        out.setdefault(n.id, []).append(ast.Name(id="<runtime>"))
    return out


_MODULES: dict[str, Module | None] = {}


def _our_module(dotted: str) -> Module | None:
    """The parsed module `dotted` of this repository (market_data.* or api.*), else None."""
    if dotted not in _MODULES:
        parts = dotted.split(".")
        base = ROOT / "plugins" if parts[0] == "market_data" else ROOT
        path = base.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = base.joinpath(*parts, "__init__.py")
        _MODULES[dotted] = Module(path) if parts[0] in ("market_data", "api") and path.exists() else None
    return _MODULES[dotted]


def _sql_calls(module: Module) -> list[tuple[str, int, ast.expr, dict[str, list[ast.expr]]]]:
    """(enclosing function, line, SQL argument, the function's assignments) of every SQL call."""
    out: list[tuple[str, int, ast.expr, dict[str, list[ast.expr]]]] = []

    def visit(node: ast.AST, function: str, local: dict[str, list[ast.expr]]) -> None:
        for child in ast.iter_child_nodes(node):
            name, scope = function, local
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name, scope = child.name, {**local, **_assignments(child)}
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in SQL_METHODS
                and child.args
            ):
                out.append((function, child.lineno, child.args[0], local))
            visit(child, name, scope)

    visit(module.tree, "<module>", {})
    return out


def test_sql_is_built_from_constants_only() -> None:
    checked = 0
    offenders = []
    used_allowances = set()
    for path in SOURCES:
        module = Module(path)
        for function, line, sql, local in _sql_calls(module):
            checked += 1
            if module.constant(sql, local=local):
                continue
            key = (module.rel, function)
            if key in ALLOWED:
                used_allowances.add(key)
                continue
            offenders.append(f"{module.rel}:{line} in {function}(): {ast.unparse(sql)[:100]}")
    assert checked > 100, f"only {checked} SQL calls found"  # the scan is not looking at nothing
    assert not offenders, "SQL built from runtime values (bind them as $n):\n" + "\n".join(offenders)
    assert used_allowances == set(ALLOWED), f"stale allowances: {set(ALLOWED) - used_allowances}"


def test_the_scan_catches_interpolated_values() -> None:
    source = """
from market_data.notifications import payload_json
from elsewhere import builder
SAFE = "SELECT 1"
COLUMNS = ("a", "b")
TYPES = {"a": "text", "b": "int"}
def f(conn, symbol, table):
    conn.fetch(SAFE)
    conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM t")
    conn.fetch(f"SELECT * FROM bars WHERE symbol = '{symbol}'")
    conn.execute("DELETE FROM " + table)
    conn.execute("SELECT %s" % symbol)
    conn.execute("SELECT {}".format(symbol))
    sql = SAFE if symbol else "SELECT 2"
    conn.fetch(sql)
    sql2 = symbol
    conn.fetch(sql2)
    conn.fetch(f"INSERT INTO t VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")
    for name in COLUMNS:
        conn.fetch(f"SELECT {name}")
    conn.fetch("SELECT {x}".format(x=symbol))
    conn.fetch(f"SELECT {', '.join(f'{c}::{TYPES[c]}' for c in COLUMNS)}")
    conn.fetch(f"SELECT {TYPES[symbol]}")
    conn.fetch(f"SELECT {payload_json('bar', table='bars', notified=False)}")
    conn.fetch(f"SELECT {payload_json('bar', symbol=symbol)}")
    conn.fetch(f"SELECT {builder('bar')}")
"""
    tmp = ROOT / ".state" / "sql_scan_probe.py"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_text(source)
    try:
        module = Module(tmp)
        verdicts = [module.constant(sql, local=local) for _, _, sql, local in _sql_calls(module)]
    finally:
        tmp.unlink()
    assert verdicts == [
        *(True, True, False, False, False, False, True, False, True, False),
        *(False, True, False, True, False, False),
    ]

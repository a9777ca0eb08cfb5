"""The structure of the cvkit package, measured from its source text (standard library only: nothing is imported).

Reports, as a plain-text table and optionally as JSON (``--json PATH``):
  1. the import graph between cvkit modules: module-level imports (what ``import`` runs) and, separately, the
     imports inside functions (deliberate lazy imports); ``from __future__`` and ``if TYPE_CHECKING:`` blocks
     are left out. Import cycles among the module-level imports: the strongly connected components of more
     than one module, and each elementary cycle once.
  2. layer rules (LAYER_RULES below): which module may not import which, at module level or lazily.
  3. task-kind branches: comparisons on a task's kind (``kind == "detection"``, ``x.task_kind != kind``,
     ``name in ("classification", ...)``, ``match kind: case "segmentation":``) outside the modules allowed to
     hold them (ALLOWED_KIND_MODULES below, or ``--allow``).
  4. what ``cvkit.load`` imports: the closure of module-level imports from cvkit.inference and whatever
     ``cvkit/__init__.py`` lazily imports for ``load`` (a module's parent packages run too), whether it reaches
     a module of LOAD_MUST_NOT_REACH (with the chain of imports that does), and which of its modules import a
     package of LOAD_WATCHED_PACKAGES (pytorch_lightning) at module level.
  5. sizes: the longest modules and functions (lines), against the split-me convention of SIZE_LIMITS.

Exit status 0 when there are no cycles, no layer violations and no disallowed kind branches, else 1
(``--no-fail``: always 0); 2 for a usage error.

    python scripts/structure.py                          # the repo's src/cvkit
    python scripts/structure.py --allow cvkit.task_kinds --json structure.json
    python scripts/structure.py --root path/to/src --graph --no-fail
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import textwrap
from pathlib import Path

# ---------------------------------------------------------------------------------------------------------------
# The rules. Module names match themselves and everything under them ("cvkit.tasks" matches cvkit.tasks.base);
# "cvkit" matches every cvkit module.

PACKAGE = "cvkit"

# (name, importers, forbidden imports): no module under `importers` imports (at module level or inside a function)
# a module under `forbidden`.
LAYER_RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "lower layers do not import the task layer",
        ("cvkit.data", "cvkit.models", "cvkit.optim"),
        ("cvkit.tasks", "cvkit.builders", "cvkit.inference"),
    ),
    ("console is a leaf", ("cvkit.console",), ("cvkit",)),
    ("errors is a leaf", ("cvkit.errors",), ("cvkit",)),
]

# Task-kind branches: comparisons with one of these names, or with a name/attribute ending in KIND_SUFFIX.
TASK_KINDS = ("classification", "detection", "segmentation")
KIND_SUFFIX = "kind"
# The modules that may branch on the task kind (the task table); --allow adds to these.
ALLOWED_KIND_MODULES: tuple[str, ...] = ()

# cvkit.load: where it starts (besides what cvkit/__init__.py lazily imports for `load`), what it must not reach,
# and which third-party packages its modules should not import at module level.
LOAD_NAME = "load"
LOAD_ROOTS: tuple[str, ...] = ("cvkit.inference",)
LOAD_MUST_NOT_REACH = {"builders": "cvkit.builders", "tasks": "cvkit.tasks", "train": "cvkit.train"}
LOAD_WATCHED_PACKAGES = ("pytorch_lightning", "lightning")

# "A module over ~300 lines or a function over ~50 is a sign to split" (reported, never a failure).
SIZE_LIMITS = {"module": 300, "function": 50}
TOP = 10

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "src"
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


def under(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether module `name` is one of `prefixes` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# ---------------------------------------------------------------------------------------------------------------
# Reading the package.


def find_modules(root: Path) -> dict[str, Path]:
    """cvkit's modules under `root` (the folder that holds the cvkit package): dotted name -> file."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts or not all(p.isidentifier() for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def kind_named(node: ast.expr) -> bool:
    """A Name/Attribute whose name ends in "kind", or a subscript with such a string key (cfg["task_kind"])."""
    if isinstance(node, ast.Name):
        return node.id.lower().endswith(KIND_SUFFIX)
    if isinstance(node, ast.Attribute):
        return node.attr.lower().endswith(KIND_SUFFIX)
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.lower().endswith(KIND_SUFFIX)
    return False


def task_constant(node: ast.expr) -> bool:
    """A string constant naming a task, or a tuple/list/set holding one."""
    if isinstance(node, ast.Constant):
        return node.value in TASK_KINDS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(task_constant(e) for e in node.elts)
    return False


def pattern_names_task(pattern: ast.pattern) -> bool:
    if isinstance(pattern, ast.MatchValue):
        return task_constant(pattern.value)
    if isinstance(pattern, ast.MatchOr):
        return any(pattern_names_task(p) for p in pattern.patterns)
    if isinstance(pattern, ast.MatchAs) and pattern.pattern is not None:
        return pattern_names_task(pattern.pattern)
    return False


class ModuleScanner(ast.NodeVisitor):
    """One module's imports (by scope), task-kind comparisons and function sizes."""

    BRANCH_OPS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)

    def __init__(self, name: str, path: Path, modules: dict[str, Path], text: str) -> None:
        self.name, self.modules = name, modules
        self.lines = text.splitlines()
        self.is_package = path.name == "__init__.py"
        self.functions: list[str] = []  # the enclosing function/class names
        self.function_depth = 0
        self.type_checking = False
        self.imports: list[dict] = []  # cvkit imports
        self.third_party: list[dict] = []
        self.kind_branches: list[dict] = []
        self.function_sizes: list[dict] = []

    # --- scopes
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function_sizes.append(
            {
                "function": f"{self.name}:{'.'.join([*self.functions, node.name])}",
                "line": node.lineno,
                "lines": node.end_lineno - node.lineno + 1,
            }
        )
        self.functions.append(node.name)
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)  # a class body runs at import: its imports are module-level
        self.functions.pop()

    def visit_If(self, node: ast.If) -> None:
        if not is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        outer, self.type_checking = self.type_checking, True
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking = outer
        for stmt in node.orelse:
            self.visit(stmt)

    @property
    def scope(self) -> str:
        return "type_checking" if self.type_checking else "lazy" if self.function_depth else "module"

    # --- imports
    def record(self, target: str, line: int, name: str | None, how: str) -> None:
        """One import of `target` (`from x import a, b` of the same module at one line: one entry naming a and b)."""
        top = target.split(".")[0]
        if top != PACKAGE and top in STDLIB:
            return
        found = self.imports if top == PACKAGE else self.third_party
        for entry in found:
            if (entry["imported"], entry["line"], entry["scope"]) == (target, line, self.scope):
                entry["names"].append(name)
                return
        entry = {
            "importer": self.name,
            "imported": target,
            "line": line,
            "scope": self.scope,
            "function": ".".join(self.functions),
            "names": [name],
            "how": how,
        }
        if top == PACKAGE:
            found.append({**entry, "resolved": target in self.modules})
        else:
            found.append({**entry, "package": top})

    def resolve_from(self, base: str, alias_name: str) -> str:
        """`from base import alias_name`: the submodule when it is a module file, else the module `base`."""
        if alias_name != "*" and f"{base}.{alias_name}" in self.modules:
            return f"{base}.{alias_name}"
        return base

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.record(alias.name, node.lineno, alias.asname or alias.name, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, node.module] if node.module else package)
        else:
            base = node.module or ""
        if base == "__future__":
            return
        for alias in node.names:
            target = self.resolve_from(base, alias.name) if base.split(".")[0] == PACKAGE else base
            self.record(target, node.lineno, alias.asname or alias.name, "from")

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("cvkit.x") / __import__("cvkit.x") with a constant name.
        func = node.func
        dynamic = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
            isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
        )
        first = node.args[0] if node.args else None
        if dynamic and isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value[:1] != ".":
            self.record(first.value, node.lineno, None, "dynamic")
        self.generic_visit(node)

    # --- task-kind branches
    def source(self, line: int) -> str:
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        if any(isinstance(op, self.BRANCH_OPS) for op in node.ops) and any(
            kind_named(o) or task_constant(o) for o in operands
        ):
            self.kind_branches.append(
                {
                    "module": self.name,
                    "line": node.lineno,
                    "source": self.source(node.lineno),
                    "compare": ast.unparse(node),
                }
            )
        self.generic_visit(node)

    def visit_Match(self, node: ast.Match) -> None:
        for case in node.cases:
            if kind_named(node.subject) or pattern_names_task(case.pattern):
                self.kind_branches.append(
                    {
                        "module": self.name,
                        "line": case.pattern.lineno,
                        "source": self.source(case.pattern.lineno),
                        "compare": f"match {ast.unparse(node.subject)}: case {ast.unparse(case.pattern)}",
                    }
                )
        self.generic_visit(node)


# ---------------------------------------------------------------------------------------------------------------
# The measures.


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def elementary_cycles(graph: dict[str, set[str]], components: list[list[str]], limit: int = 200) -> list[list[str]]:
    """Each elementary cycle once, as [a, b, ..., a], starting from its smallest module (at most `limit`)."""
    cycles: list[list[str]] = []
    for component in components:
        members = set(component)
        for start in component:  # cycles through `start` and modules after it only: each cycle found once
            allowed = {m for m in members if m >= start}
            path = [start]
            work = [iter(sorted(graph[start] & allowed))]
            while work and len(cycles) < limit:
                child = next(work[-1], None)
                if child is None:
                    work.pop()
                    path.pop()
                elif child == start:
                    cycles.append([*path, start])
                elif child not in path:
                    path.append(child)
                    work.append(iter(sorted(graph[child] & allowed)))
    return cycles


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def load_closure(graph_lines: dict[str, dict[str, int]], modules: dict[str, Path], roots: list[str]) -> dict:
    """The modules importing `roots` runs (module-level imports, and the parent packages of each module), with
    a shortest chain of imports to each: "a:3 -> b:29 -> c" (a imports b at its line 3, b imports c at line 29)."""
    reached_by: dict[str, tuple[str | None, int | None, str]] = {}  # module -> (importer, line, note)
    queue = []
    for root in roots:
        for name in [*parents(root), root]:
            if name in modules and name not in reached_by:
                reached_by[name] = (None, None, "" if name == root else f"parent package of {root}")
                queue.append(name)
    while queue:
        node = queue.pop(0)
        for imported, line in sorted(graph_lines.get(node, {}).items(), key=lambda item: (item[1], item[0])):
            for name in [*parents(imported), imported]:
                if name in modules and name not in reached_by:
                    reached_by[name] = (node, line, "" if name == imported else f"parent package of {imported}")
                    queue.append(name)

    def chain(name: str) -> str:
        links = [name + (f" ({reached_by[name][2]})" if reached_by[name][2] else "")]
        while reached_by[name][0] is not None:
            previous, line, _ = reached_by[name]
            note = reached_by[previous][2]
            links.append(f"{previous}:{line}" + (f" ({note})" if note else ""))
            name = previous
        return " -> ".join(reversed(links))

    return {"modules": sorted(reached_by), "chain": chain}


def measure(root: Path, allow: list[str]) -> dict:
    modules = find_modules(root)
    if not modules:
        raise SystemExit(f"structure.py: no {PACKAGE} package under {root}")
    scanners: dict[str, ModuleScanner] = {}
    module_sizes, parse_errors = [], []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        scanner = ModuleScanner(name, path, modules, text)
        try:
            scanner.visit(ast.parse(text, filename=str(path)))
        except SyntaxError as error:
            parse_errors.append({"module": name, "line": error.lineno, "error": error.msg})
        scanners[name] = scanner
        module_sizes.append({"module": name, "path": str(path.relative_to(root)), "lines": len(text.splitlines())})

    imports = [entry for s in scanners.values() for entry in s.imports]
    by_scope = {scope: [i for i in imports if i["scope"] == scope] for scope in ("module", "lazy", "type_checking")}
    unresolved = [i for i in imports if not i["resolved"] and i["scope"] != "type_checking"]

    # 1. the module-level graph and its cycles (a module naming itself is no cycle)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    first_line: dict[str, dict[str, int]] = {name: {} for name in modules}
    for entry in by_scope["module"]:
        importer, imported = entry["importer"], entry["imported"]
        if entry["resolved"] and imported != importer:
            graph[importer].add(imported)
            first_line[importer].setdefault(imported, entry["line"])
    components = strongly_connected(graph)
    cycles = elementary_cycles(graph, components)
    in_component = {m: i for i, c in enumerate(components) for m in c}
    cycle_edges = [
        {"importer": a, "imported": b, "line": line}
        for a, targets in sorted(first_line.items())
        for b, line in sorted(targets.items())
        if a in in_component and in_component.get(b) == in_component[a]
    ]

    # 2. layer rules, over module-level and lazy imports
    violations = []
    for rule, importers, forbidden in LAYER_RULES:
        for entry in imports:
            if entry["scope"] == "type_checking" or entry["importer"] == entry["imported"]:
                continue
            if under(entry["importer"], importers) and under(entry["imported"], forbidden):
                violations.append({"rule": rule, **{k: entry[k] for k in ("importer", "imported", "line", "scope")}})
    violations.sort(key=lambda v: (v["importer"], v["line"], v["imported"]))

    # 3. task-kind branches
    allowed = sorted({*ALLOWED_KIND_MODULES, *allow})
    branches = sorted((b for s in scanners.values() for b in s.kind_branches), key=lambda b: (b["module"], b["line"]))
    disallowed = [b for b in branches if not under(b["module"], allowed)]
    allowed_hits = [b for b in branches if under(b["module"], allowed)]

    # 4. cvkit.load's closure
    load_imports = [
        i
        for i in by_scope["lazy"]
        if i["importer"] == PACKAGE and (LOAD_NAME in i["names"] or LOAD_NAME in i["function"].split("."))
    ]
    roots = sorted({*LOAD_ROOTS, *(i["imported"] for i in load_imports if i["resolved"])} & set(modules))
    closure = load_closure(first_line, modules, roots)
    reached = {
        key: [{"module": m, "chain": closure["chain"](m)} for m in closure["modules"] if under(m, (prefix,))]
        for key, prefix in LOAD_MUST_NOT_REACH.items()
    }
    third = [t for name in closure["modules"] for t in scanners[name].third_party if t["scope"] == "module"]
    watched = [
        {"module": t["importer"], "line": t["line"], "imported": t["imported"]}
        for t in third
        if t["package"] in LOAD_WATCHED_PACKAGES
    ]

    # 5. sizes
    functions = sorted(
        (f for s in scanners.values() for f in s.function_sizes), key=lambda f: (-f["lines"], f["function"])
    )
    module_sizes.sort(key=lambda m: (-m["lines"], m["module"]))

    def edge(entry: dict) -> dict:
        return {k: entry[k] for k in ("importer", "imported", "line", "names", "how", "function", "resolved")}

    report = {
        "root": str(root),
        "modules": sorted(modules),
        "parse_errors": parse_errors,
        "imports": {
            "module_level": [edge(i) for i in by_scope["module"]],
            "lazy": [edge(i) for i in by_scope["lazy"]],
            "type_checking": [edge(i) for i in by_scope["type_checking"]],
            "unresolved": [edge(i) | {"scope": i["scope"]} for i in unresolved],
        },
        "graph": {name: sorted(targets) for name, targets in sorted(graph.items())},
        "cycles": {"components": components, "cycles": cycles, "edges": cycle_edges},
        "layer_rules": [{"rule": r, "importers": list(i), "forbidden": list(f)} for r, i, f in LAYER_RULES],
        "layer_violations": violations,
        "kind_branches": {"allowed_modules": allowed, "disallowed": disallowed, "allowed": allowed_hits},
        "load": {
            "roots": roots,
            "lazy_imports_in_init": [edge(i) for i in load_imports],
            "closure": closure["modules"],
            "reaches": reached,
            **{f"contains_{key}": bool(found) for key, found in reached.items()},
            "watched_packages": list(LOAD_WATCHED_PACKAGES),
            "watched_importers": watched,
            "third_party": sorted({t["package"] for t in third}),
        },
        "sizes": {
            "limits": SIZE_LIMITS,
            "modules": module_sizes[:TOP],
            "functions": functions[:TOP],
            "modules_over_limit": sum(m["lines"] > SIZE_LIMITS["module"] for m in module_sizes),
            "functions_over_limit": sum(f["lines"] > SIZE_LIMITS["function"] for f in functions),
            "module_count": len(module_sizes),
            "function_count": len(functions),
        },
    }
    report["ok"] = not (components or violations or disallowed or parse_errors)
    return report


# ---------------------------------------------------------------------------------------------------------------
# Printing.


def table(headers: list[str], rows: list[list], indent: str = "  ") -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(report: dict, show_graph: bool) -> str:
    out: list[str] = []

    def section(title: str, status: str = "") -> None:
        out.extend(["", f"{title}{'  ' + status if status else ''}", "=" * len(title)])

    imports, cycles = report["imports"], report["cycles"]
    section("cvkit structure")
    out.append(
        table(
            ["measure", "value"],
            [
                ["root", report["root"]],
                ["modules", len(report["modules"])],
                ["module-level cvkit imports (statement, module)", len(imports["module_level"])],
                ["module-level import graph edges (module pairs)", sum(map(len, report["graph"].values()))],
                ["lazy cvkit imports (in functions)", len(imports["lazy"])],
                ["TYPE_CHECKING-only cvkit imports", len(imports["type_checking"])],
                ["unresolved cvkit imports", len(imports["unresolved"])],
                ["import cycles (components / cycles)", f"{len(cycles['components'])} / {len(cycles['cycles'])}"],
                ["layer violations", len(report["layer_violations"])],
                ["kind branches outside allowed modules", len(report["kind_branches"]["disallowed"])],
                *[[f"cvkit.load reaches {key}", report["load"][f"contains_{key}"]] for key in LOAD_MUST_NOT_REACH],
                [
                    "cvkit.load closure modules importing " + "/".join(report["load"]["watched_packages"]),
                    len({w["module"] for w in report["load"]["watched_importers"]}),
                ],
                ["result", "OK" if report["ok"] else "FAIL"],
            ],
        )
    )
    for error in report["parse_errors"]:
        out.append(f"  syntax error: {error['module']}:{error['line']}  {error['error']}")

    section("1. import cycles (module-level imports)", "none" if not cycles["components"] else "")
    for i, component in enumerate(cycles["components"], 1):
        out.append(f"  component {i} ({len(component)} modules): {', '.join(component)}")
    if cycles["cycles"]:
        out.append("  cycles:")
        out.extend(f"    {' -> '.join(c)}" for c in cycles["cycles"])
    if cycles["edges"]:
        out.append("  imports inside the components:")
        out.extend(f"    {e['importer']} -> {e['imported']} ({e['line']})" for e in cycles["edges"])
    if imports["unresolved"]:
        out.append("  unresolved (no such cvkit module):")
        out.extend(f"    {e['importer']} -> {e['imported']} ({e['line']}, {e['scope']})" for e in imports["unresolved"])

    section("lazy cvkit imports (inside functions)", "none" if not imports["lazy"] else "")
    out.extend(
        f"  {e['importer']} -> {e['imported']} ({e['line']}, in {e['function'] or '?'})" for e in imports["lazy"]
    )
    if show_graph:
        section("module-level import graph")
        out.extend(f"  {name}: {', '.join(targets) or '-'}" for name, targets in report["graph"].items())

    section("2. layer violations", "none" if not report["layer_violations"] else "")
    for rule in report["layer_rules"]:
        hits = [v for v in report["layer_violations"] if v["rule"] == rule["rule"]]
        out.append(
            f"  {rule['rule']}: {', '.join(rule['importers'])} import no {', '.join(rule['forbidden'])}  [{len(hits)}]"
        )
        out.extend(
            f"    {v['importer']} -> {v['imported']} ({v['line']}{', lazy' if v['scope'] == 'lazy' else ''})"
            for v in hits
        )

    kinds = report["kind_branches"]
    allowed = ", ".join(kinds["allowed_modules"]) or "none"
    section(f"3. task-kind branches outside the allowed modules ({allowed})", "none" if not kinds["disallowed"] else "")
    out.extend(f"  {b['module']}:{b['line']}  {b['source']}" for b in kinds["disallowed"])
    if kinds["allowed"]:
        out.append(f"  (and {len(kinds['allowed'])} in the allowed modules)")

    load = report["load"]
    section("4. what cvkit.load imports (module-level closure)")
    out.append(f"  starts from: {', '.join(load['roots'])}")
    out.extend(
        f"    (cvkit/__init__.py:{e['line']} lazily imports {e['imported']})" for e in load["lazy_imports_in_init"]
    )
    out.append(
        textwrap.fill(
            f"closure ({len(load['closure'])} modules): {', '.join(load['closure'])}",
            width=116,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    )
    for key, prefix in LOAD_MUST_NOT_REACH.items():
        hits = load["reaches"][key]
        out.append(f"  contains {prefix}: {'yes' if hits else 'no'}")
        out.extend(f"    {h['chain']}" for h in hits)
    watched = "/".join(load["watched_packages"])
    importers = sorted({w["module"] for w in load["watched_importers"]})
    out.append(
        f"  modules importing {watched} at module level: {len(importers)}{': ' if importers else ' (none)'}"
        f"{', '.join(importers)}"
    )
    out.extend(f"    {w['module']}:{w['line']}  {w['imported']}" for w in load["watched_importers"])
    out.append(f"  third-party packages imported at module level: {', '.join(load['third_party']) or 'none'}")

    sizes = report["sizes"]
    section("5. sizes")
    out.append(
        f"  modules over {sizes['limits']['module']} lines: {sizes['modules_over_limit']} of "
        f"{sizes['module_count']}; functions over {sizes['limits']['function']} lines: "
        f"{sizes['functions_over_limit']} of {sizes['function_count']}"
    )
    out.append(table(["longest modules", "lines"], [[m["path"], m["lines"]] for m in sizes["modules"]]))
    out.append("")
    out.append(
        table(
            ["longest functions", "line", "lines"], [[f["function"], f["line"], f["lines"]] for f in sizes["functions"]]
        )
    )
    return "\n".join(out).lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help=f"the folder that holds the {PACKAGE} package (default: the repo's src/)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (or package) allowed to branch on the task kind; repeat or comma-separate",
    )
    parser.add_argument("--graph", action="store_true", help="also print the module-level import graph")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even with cycles, violations or kind branches")
    args = parser.parse_args(argv)
    allow = [name.strip() for value in args.allow for name in value.split(",") if name.strip()]
    report = measure(args.root.resolve(), allow)
    print(render(report, args.graph))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["ok"] or args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())

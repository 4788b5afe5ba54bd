"""honed's own imports flow one way (errors <- models <- adapter/cache/config <- evaluate <- runs <- optimizers
<- compiling <- diagnose <- pages <- cli): no cycle between honed's modules, and no import of a honed module
inside a function to dodge one. The only in-function imports of honed's modules allowed are the ones
listed in `ALLOWED_IN_FUNCTION`, each for an optional dependency and each with a comment saying why. And
the parts of honed sit in the layers of `LAYERS`: no import reaches up from a lower layer to a higher one.

Imports of third-party packages inside functions (matplotlib, llama_cpp, optuna, ...) are not checked here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "honed"

# honed's parts from the bottom up: a module may import its own layer and the layers below, never one above.
# A part is a top-level module or subpackage (`artifact_*.py` are the artifact, `cli/` the command line).
LAYERS: list[set[str]] = [
    {"errors", "env_settings", "files", "text", "version"},
    {"models"},
    {"signatures", "modules", "splits", "testing"},
    {"adapter", "cache", "config", "programs"},
    {"evaluate", "executors"},
    {"runs"},
    {"optimizers"},
    {"compiling", "artifact"},
    {"diagnose"},
    {"pages"},
    {"report"},
    {"honed"},  # the package's facade, `honed/__init__.py`
    {"cli"},
]

# (importing module, imported module) -> why the import cannot sit at the top of the file. Each such import
# must also carry a comment on its own line or the line above saying why.
ALLOWED_IN_FUNCTION: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str        # the importing module
    target: str        # the honed module imported
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a honed module in `path`, resolved to module names (`from honed.x import y` names
    the submodule `honed.x.y` when `y` is one, and always `honed.x`, whose `__init__` runs first)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def resolve_from(node: ast.ImportFrom) -> list[str]:
        if node.level:
            base_parts = package.split(".")
            if node.level > 1:
                base_parts = base_parts[: -(node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        targets = [base]
        targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
        return targets

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_in_function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            child_type_checking = type_checking
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                child_type_checking = True
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                targets = resolve_from(child)
            else:
                targets = []
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    found.append(Import(module, target, child.lineno, in_function, type_checking))
            visit(child, child_in_function, child_type_checking)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False, False)
    return found


def all_imports() -> list[Import]:
    modules = discover()
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


def import_graph(imports: list[Import], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the honed modules executing it runs first. Importing `honed.a.b` also runs the package
    `honed.a` (unless the importer lives inside it); the top package `honed` is the facade over everything
    and is left out of those implicit edges, so a module naming `honed` itself still shows as a cycle."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in imports:
        if imp.in_function or imp.type_checking or imp.target not in modules:
            continue
        graph[imp.module].add(imp.target)
        parts = imp.target.split(".")
        for end in range(2, len(parts)):
            parent = ".".join(parts[:end])
            if not (imp.module == parent or imp.module.startswith(parent + ".")):
                graph[imp.module].add(parent)
    for module in graph:
        graph[module].discard(module)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest path from start back to itself inside the component
        previous: dict[str, str] = {}
        frontier = [start]
        seen = {start}
        while frontier and start not in previous:
            next_frontier = []
            for node in frontier:
                for nxt in sorted(graph[node] & members):
                    if nxt == start and start not in previous:
                        previous[start] = node
                    elif nxt not in seen:
                        seen.add(nxt)
                        previous[nxt] = node
                        next_frontier.append(nxt)
            frontier = next_frontier
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        cycles.append(list(reversed(path)))
    return cycles


def test_graph_sees_honed_modules():
    modules = discover()
    assert {"honed", "honed.errors", "honed.runs.ledger", "honed.cli"} <= set(modules)
    graph = import_graph(all_imports(), modules)
    assert "honed.errors" in graph["honed.runs.ledger"]


def test_cycle_finder_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_honed_modules():
    cycles = find_cycles(import_graph(all_imports(), discover()))
    assert not cycles, "import cycles between honed's modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def part_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return PACKAGE
    name = parts[1]
    return "artifact" if name.startswith("artifact") else name


def test_imports_flow_down_the_layers():
    modules = discover()
    layer = {part: number for number, parts in enumerate(LAYERS) for part in parts}
    unplaced = sorted({part_of(m) for m in modules} - set(layer))
    assert not unplaced, f"parts of honed with no layer in LAYERS: {unplaced}"
    upward = sorted(f"{m} ({part_of(m)}) imports {t} ({part_of(t)})"
                    for m, targets in import_graph(all_imports(), modules).items() for t in targets
                    if layer[part_of(t)] > layer[part_of(m)])
    assert not upward, "imports from a lower layer up to a higher one:\n" + "\n".join(upward)


def test_cli_command_modules_import_only_the_shared_options():
    """A command's module reaches the rest of `honed.cli` through `options` only, so a command is added or
    removed by its own file plus its line in `honed.cli.main.COMMANDS`."""
    modules = discover()
    shared = {"honed.cli.options"}
    entry = {"honed.cli", "honed.cli.__main__", "honed.cli.main"}
    assert {"honed.cli.options", "honed.cli.main", "honed.cli.run"} <= set(modules)
    reaching = sorted(f"{m} imports {t}" for m, targets in import_graph(all_imports(), modules).items()
                      if m.startswith("honed.cli.") and m not in entry | shared for t in targets
                      if t.startswith("honed.cli") and t not in shared)
    assert not reaching, "command modules importing other parts of honed.cli:\n" + "\n".join(reaching)


def comment_near(lines: list[str], line: int) -> str | None:
    """The comment on 1-based `line` or the line above it, when it says something (three words or more)."""
    for number in (line, line - 1):
        text = lines[number - 1] if 0 < number <= len(lines) else ""
        if "#" in text:
            comment = text.split("#", 1)[1].strip()
            if len(comment.split()) >= 3:
                return comment
    return None


def test_comment_near_needs_a_reason_on_the_line_or_the_one_above():
    lines = ["x = 1", "# matplotlib is optional: no plot without it", "    from honed.pages import plots",
             "y = 2  # ok"]
    assert comment_near(lines, 3) == "matplotlib is optional: no plot without it"
    assert comment_near(lines, 1) is None and comment_near(lines, 4) is None  # "ok" says nothing


def test_no_in_function_import_of_honed_modules():
    modules = discover()
    offending, missing_comment, used = [], [], set()
    for imp in all_imports():
        if not imp.in_function:
            continue
        where = f"{modules[imp.module].relative_to(SRC)}:{imp.line} imports {imp.target}"
        key = (imp.module, imp.target)
        if key not in ALLOWED_IN_FUNCTION:
            offending.append(where)
            continue
        used.add(key)
        if comment_near(modules[imp.module].read_text(encoding="utf-8").splitlines(), imp.line) is None:
            missing_comment.append(where)
    assert not offending, "honed modules imported inside functions:\n" + "\n".join(offending)
    assert not missing_comment, "allowed in-function imports without a comment why:\n" + "\n".join(missing_comment)
    stale = set(ALLOWED_IN_FUNCTION) - used
    assert not stale, f"allowlisted in-function imports that no longer exist: {sorted(stale)}"
    not_optional = {key: why for key, why in ALLOWED_IN_FUNCTION.items() if "optional" not in why.lower()}
    assert not not_optional, f"in-function imports are allowed for optional dependencies only: {not_optional}"

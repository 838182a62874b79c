"""The package's layout holds: every import runs down the stages of ARCHITECTURE.md, and no modules import in a
cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "animeback"

# What each part may import besides itself (ARCHITECTURE.md, "Stages and what they may import").
ALLOWED = {
    "errors": set(),
    "config": {"errors"},
    "imaging": {"errors"},
    "keys": {"errors"},
    "model": {"errors", "config", "imaging"},
    "stores": {"errors", "config", "keys"},
    "index": {"errors", "config", "imaging", "model", "stores"},
    "ingest": {"errors", "config", "imaging", "model", "stores", "index"},
    "query": {"errors", "config", "imaging", "model", "stores", "index"},
    "training": {"errors", "config", "imaging", "model", "stores", "index", "ingest"},
    "sources": {"errors", "config", "stores", "index", "ingest"},
    "web": {"errors", "config", "imaging", "keys", "model", "stores", "index", "query"},
    "cli": {
        "errors",
        "config",
        "imaging",
        "keys",
        "model",
        "stores",
        "index",
        "ingest",
        "query",
        "training",
        "sources",
        "web",
    },
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The animeback modules a file imports (absolute names), wherever the import statement stands."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("animeback")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("animeback"):
                continue
            names = [f"{target}.{alias.name}" for alias in node.names]
            # `from . import errors` imports a module; `from .x import Name` imports from module x
            found |= {n for n in names if _exists(n)} or {target}
    return found - {module}


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_part_of_the_package_is_placed_in_a_stage():
    parts = {_part(m) for m in _graph()} - {"__init__"}
    assert parts == set(ALLOWED), "a new top-level module or folder needs its place in ALLOWED and ARCHITECTURE.md"


def test_imports_run_down_the_stages_only():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _part(module) != _part(target)
        and _part(module) in ALLOWED
        and _part(target) not in ALLOWED[_part(module)] | {"__init__"}
    )
    assert wrong == []


def test_no_modules_import_each_other_in_a_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]) if nxt in path else nxt)
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []

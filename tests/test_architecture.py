"""The structure of ARCHITECTURE.md, enforced: no import cycle among rl4text modules (function-level imports
counted), the layers (commands -> recipes -> runtime | domain -> core; nothing imports upwards; runtime and the
domain never import each other), and no function over 100 lines.

A new module must be placed in a layer below (LAYERS); the test says so when one is missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rl4text"
MAX_FUNCTION_LINES = 100

# (layer, rank, module prefixes); a module belongs to its longest matching prefix. Runtime and domain share
# rank 1 and may not import each other.
LAYERS = [
    (
        "core",
        0,
        [
            "rl4text",
            "rl4text.core",
            "rl4text.registry",
            "rl4text.config",
            "rl4text.char_tokenizer",
            "rl4text.text",
        ],
    ),
    (
        "domain",
        1,
        [
            "rl4text.models",
            "rl4text.policies",
            "rl4text.rollout",
            "rl4text.generation",
            "rl4text.envs",
            "rl4text.algorithms",
            "rl4text.rewards",
            "rl4text.metrics",
            "rl4text.tasks",
            "rl4text.evaluate",
            "rl4text.rm",
            "rl4text.label",
        ],
    ),
    (
        "runtime",
        1,
        [
            "rl4text.runtime",
            "rl4text.runtime.distributed",
            "rl4text.checkpoint",
            "rl4text.tracking",
            "rl4text.progress",
        ],
    ),
    (
        "recipes",
        2,
        [
            "rl4text.train",
            "rl4text.sft",
            "rl4text.dpo",
            "rl4text.rm.train",
            "rl4text.compare",
            "rl4text.significance",
            "rl4text.wandb_offline",
        ],
    ),
    (
        "commands",
        3,
        [
            "rl4text.cli",
            "rl4text.__main__",
            "rl4text.errors",
            "rl4text.quickstart",
            "rl4text.bench",
            "rl4text.bench_stats",
            "rl4text.bench_report",
            "rl4text.commands",
            "rl4text.rm.cli",
            "rl4text.label.cli",
            "rl4text.label.serve",
        ],
    ),
]
# narrower rules of the issue (#12) on top of the layers: {importer prefix: allowed imported prefixes}
ONLY = {
    "rl4text.evaluate": ["rl4text.rollout", "rl4text.text", "rl4text.metrics"],
}
NEVER = [("rl4text.rewards", "rl4text.rm")]  # the reward package never imports the reward-model package


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or (prefix != "rl4text" and name.startswith(prefix + "."))


def layer_of(name: str) -> tuple[str, int] | None:
    best = None
    for layer, rank, prefixes in LAYERS:
        for prefix in prefixes:
            if _under(name, prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, layer, rank)
    return None if best is None else (best[1], best[2])


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """The rl4text modules ``name`` imports anywhere in its file (module level or inside functions)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_blocks(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from rl4text.x import y` imports the module rl4text.x.y when y is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_checker_sees_function_level_imports_and_cycles():
    # rl4text.bench imports rl4text.train inside a function only
    assert "rl4text.train" in GRAPH["rl4text.bench"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert find_cycles(GRAPH) == []


def test_every_module_has_a_layer():
    missing = [name for name in MODULES if layer_of(name) is None]
    assert not missing, (
        f"place these modules in a layer of tests/test_architecture.py (and ARCHITECTURE.md): {missing}"
    )


def test_nothing_imports_upwards():
    bad = []
    for importer, imported in sorted((a, b) for a, deps in GRAPH.items() for b in deps):
        (la, ra), (lb, rb) = layer_of(importer), layer_of(imported)
        if rb > ra or (ra == rb == 1 and la != lb):
            bad.append(f"{importer} ({la}) imports {imported} ({lb})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("importer", sorted(ONLY))
def test_narrow_dependencies(importer):
    allowed = ONLY[importer]
    extra = [m for m in GRAPH[importer] if not any(_under(m, p) for p in allowed)]
    assert not extra, f"{importer} may import only {allowed}, imports {extra}"


@pytest.mark.parametrize(("importer", "forbidden"), NEVER)
def test_forbidden_imports(importer, forbidden):
    bad = [(a, b) for a, deps in GRAPH.items() if _under(a, importer) for b in deps if _under(b, forbidden)]
    assert not bad


def test_no_private_names_imported_across_packages():
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rl4text"):
                here, there = name.split(".")[:2], node.module.split(".")[:2]
                bad += [
                    f"{name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and here != there
                ]
    assert not bad


def test_no_function_over_100_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long

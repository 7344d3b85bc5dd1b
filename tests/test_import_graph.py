"""The house (STYLE.md): imports among `farm` modules form no cycle and point down the layers.

The graph is read from the source with `ast` (every `import` / `from ... import`, at module level
or inside a function: a lazy import is still a dependency), so it needs nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "farm"

# layer of each room: a module may import its own layer or lower ones, never a higher one
LAYERS = {
    "farm.config": 0,
    "farm.metrics": 0,
    "farm.files": 0,
    "farm.checkpoints": 1,
    "farm.data": 1,
    "farm.models": 1,
    "farm.engine": 2,
    "farm.evaluate": 3,
    "farm.sweep": 4,
    "farm.tracking": 4,
    "farm.cli": 5,
    "farm.cli.parser": 0,  # the argument tree is a description, read by job-spec checks (farm.sweep.jobs)
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """farm modules imported by one file (`from a.b import c` is a.b.c when that is a module, else a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "farm"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "farm":
            assert node.level == 0, f"{path}: relative import"
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(g, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(g):
        if colour[start]:
            continue
        stack, path = [(start, iter(sorted(g[start])))], [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child) :] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(g[child]))))
                path.append(child)
    return None


def layer(module: str) -> int:
    room = max((r for r in LAYERS if module == r or module.startswith(r + ".")), key=len, default=None)
    assert room is not None, f"{module} belongs to no room of the house; add it to LAYERS"
    return LAYERS[room]


def test_find_cycle_finds_a_cycle_and_none_where_there_is_none():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_farm_modules():
    g = graph()
    assert len(g) > 30 and sum(map(len, g.values())) > 50  # the graph was really read
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down_the_layers(module):
    if module == "farm":
        return
    up = sorted(m for m in graph()[module] if layer(m) > layer(module))
    assert not up, f"{module} (layer {layer(module)}) imports higher rooms: {up}"


def test_the_parser_imports_no_command():
    """A job spec is checked against the parser (farm.sweep.jobs); the parser must not pull in the commands."""
    g = graph()
    assert g["farm.cli.parser"] <= {"farm.config"}
    assert "farm.cli.parser" in g["farm.sweep.jobs"]

"""The package's import graph: no circles, and every import between subpackages goes down a floor.

Read from the source with ``ast`` (function-level imports included, since a lazy import is still a
dependency), so the test runs in well under a second and fails on the commit that adds a knot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Floors, ground first. A module may import from its own subpackage and from any lower floor only.
FLOORS: list[set[str]] = [
    {"rl4rec", "rl4rec.errors"},
    {"rl4rec.io", "rl4rec.devices", "rl4rec.metrics", "rl4rec.config_cli", "rl4rec.run_layout"},
    {"rl4rec.data", "rl4rec.statistics"},
    {"rl4rec.policy", "rl4rec.retrieval"},
    {"rl4rec.rewards"},
    {"rl4rec.training"},
    {"rl4rec.evaluation"},
    {"rl4rec.cli"},
    {"rl4rec.demo"},
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "rl4rec").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> nx.DiGraph:
    known = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import submodule` depends on the submodule, not on the package's __init__
                subs = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [s for s in subs if s in known] or [node.module]
            graph.add_edges_from((name, t) for t in targets if t in known and t != name)
    return graph


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def floor(module: str) -> int:
    package = subpackage(module)
    for level, members in enumerate(FLOORS):
        if package in members:
            return level
    raise AssertionError(f"{package} has no floor in FLOORS: add it where its imports put it")


def test_graph_sees_the_package():
    graph = import_graph()
    assert graph.number_of_nodes() > 40
    assert graph.has_edge("rl4rec.training.trainer", "rl4rec.training.run_context")


def test_no_import_circles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == []


def test_imports_only_go_down():
    upward = [
        f"{a} -> {b}"
        for a, b in import_graph().edges
        if subpackage(a) != subpackage(b) and floor(b) >= floor(a)
    ]
    assert upward == []


@pytest.mark.parametrize("leaf", ["rl4rec.metrics", "rl4rec.errors"])
def test_ground_floor_modules_import_no_subpackage_above_errors(leaf):
    assert {subpackage(b) for b in import_graph().successors(leaf)} <= {"rl4rec.errors"}


def test_evaluation_needs_nothing_of_training():
    """Run-directory names live at the ground floor (rl4rec.run_layout): evaluating never imports a trainer."""
    edges = [f"{a} -> {b}" for a, b in import_graph().edges
             if subpackage(a) == "rl4rec.evaluation" and subpackage(b) == "rl4rec.training"]  # fmt: skip
    assert edges == []

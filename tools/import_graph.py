"""The shape of memsys's imports, for reviews and closing notes: modules, imports, import
cycles (with the modules in each), imports that point back up (from a module to one above
it, which only a cycle makes possible) and the number of layers (the longest chain of
imports, cycles counted as one layer). Reads every import statement, inside functions too,
with grimp (import-linter's graph).

    .venv/bin/python tools/import_graph.py [PACKAGE ...]     # default: memsys components
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: each import cycle as one group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return groups


def main(packages: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    graph = grimp.build_graph(*packages, cache_dir=None)
    nodes = sorted(m for m in graph.modules if m.split(".")[0] in packages)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in nodes:
        edges[module] = {m for m in graph.find_modules_directly_imported_by(module) if m in edges or m in nodes}
        edges[module].discard(module)
    groups = strongly_connected(nodes, edges)
    group_of = {m: i for i, group in enumerate(groups) for m in group}
    # Layers: the longest chain of imports through the graph of cycles, each cycle one node.
    depth: dict[int, int] = {}

    def layer(group: int) -> int:
        if group not in depth:
            below = {group_of[t] for m in groups[group] for t in edges[m]} - {group}
            depth[group] = 1 + max((layer(g) for g in below), default=0)
        return depth[group]

    sys.setrecursionlimit(10_000)
    layers = max((layer(i) for i in range(len(groups))), default=0)
    cycles = [g for g in groups if len(g) > 1]
    imports = sum(len(t) for t in edges.values())
    back = sum(1 for m in nodes for t in edges[m] if group_of[m] == group_of[t])
    print(f"modules: {len(nodes)}")
    print(f"imports between them: {imports}")
    print(f"import cycles: {len(cycles)}")
    for group in cycles:
        print("  " + " <-> ".join(group))
    print(f"imports inside a cycle (one of them points back up): {back}")
    print(f"layers: {layers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["memsys", "components"]))

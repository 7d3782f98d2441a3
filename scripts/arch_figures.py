"""Figures of the library's structure (docs/architecture.md): imports of the runtime (``workers``) from the
library outside its command line, the largest import cycle, imports inside functions, the longest functions,
and how many modules sit at ``generator/``'s top level. Static (``ast``): nothing is imported.

    python scripts/arch_figures.py [REPO] [--json]
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ".")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_cli(mod: str) -> bool:
    """The command line: ``generator.cli`` (a package now; ``cli.py`` and ``cli_*.py`` modules before)."""
    return mod == "generator.cli" or mod.startswith(("generator.cli.", "generator.cli_"))


def resolve(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def main() -> None:
    files = sorted(p for d in ("generator", "workers") for p in (ROOT / d).rglob("*.py"))
    mods = {module_name(p): p for p in files}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    inner_imports = 0
    to_workers = 0
    funcs: list[tuple[int, str]] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and mod.startswith("generator") \
                    and ".migrations." not in mod:
                funcs.append((node.end_lineno - node.lineno + 1, f"{mod}.{node.name}"))
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [resolve(mod, node, path.name == "__init__.py")]
                       + [resolve(mod, node, path.name == "__init__.py") + "." + a.name for a in node.names])
            p = parents.get(node)
            inside = type_only = False
            while p is not None:
                if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    inside = True
                if isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test):
                    type_only = True
                p = parents.get(p)
            if type_only:  # no arrow at run time
                continue
            hit = {t for t in targets if t in mods}
            if mod.startswith("generator") and not _is_cli(mod):
                inner_imports += inside
                to_workers += any(t.startswith("workers") for t in targets)
            edges[mod] |= hit - {mod}
    # strongly connected components (Tarjan)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    biggest = max(sccs, key=len)
    funcs.sort(reverse=True)
    top = [p for p in (ROOT / "generator").glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    packages = [p for p in (ROOT / "generator").iterdir() if (p / "__init__.py").exists()]
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "generator").rglob("*.py"))
    figures = {
        "imports of workers in generator/, outside the command line": to_workers,
        "largest import cycle (modules)": len(biggest) if len(biggest) > 1 else 0,
        "imports inside functions in generator/, outside the command line": inner_imports,
        "largest function in generator/ (lines; migrations aside)": f"{funcs[0][0]} ({funcs[0][1]})",
        "functions over 80 lines in generator/ (migrations aside)": sum(n > 80 for n, _ in funcs),
        "modules at generator/ top level": len(top),
        "sub-packages of generator/": len(packages),
        "lines in generator/": lines,
    }
    if "--json" in sys.argv:
        print(json.dumps({"figures": figures, "cycle": sorted(biggest), "over_80": funcs[:40]}, indent=1))
        return
    for k, v in figures.items():
        print(f"{k:62} {v}")
    if len(biggest) > 1:
        print("cycle:", ", ".join(sorted(biggest)))
    print("over 80:", ", ".join(f"{n} {name}" for n, name in funcs if n > 80))


if __name__ == "__main__":
    main()

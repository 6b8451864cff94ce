"""The packages read top-down (issue 38, item 6): no import circle inside a package, no module reaching
up to its package's ``__init__``, and no function longer than a reader can hold. Read from the source
with ``ast``, nothing imported.

An import counts wherever it is written, at the top of a module or inside a function (a circle hidden
in a function is still a circle to a reader); imports under ``if TYPE_CHECKING:`` (annotations only,
never run) do not. A package's own ``__init__`` is one of its modules, so a module that imports its
package's root (``from .. import __version__``) closes a circle too: the root imports it.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "clipunlearn"
#: about a screen: 60 lines of code, with room for a docstring (the longest today: audit_run, 65)
MAX_FUNCTION_LINES = 70


def _modules(src: Path) -> dict[str, Path]:
    """Every module of the package by dotted name; a package by its own name (its ``__init__.py``)."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of a module, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _imported(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package's modules that module ``name`` imports, each with the first line that does."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: dict[str, int] = {}
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            # `from P import m` imports module P.m where m is one; otherwise a name of P
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        for target in targets:
            if target in modules and target != name:
                out.setdefault(target, node.lineno)
    return out


def _circles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def package_circles(src: Path = SRC) -> list[str]:
    """Each import circle between the modules of one package (a subpackage counts as one module: its
    modules' imports are its own), with the import lines that close it."""
    modules = _modules(src)
    imports = {name: _imported(name, path, modules) for name, path in modules.items()}
    packages = sorted(name for name, path in modules.items() if path.name == "__init__.py")
    report = []
    for package in packages:
        def member(module: str, package: str = package) -> str | None:
            """The module of ``package`` that ``module`` is or lies in (None: outside the package)."""
            if module == package:
                return package
            if not module.startswith(package + "."):
                return None
            return f"{package}.{module[len(package) + 1:].split('.')[0]}"

        edges: dict[str, set[str]] = {}
        where: dict[tuple[str, str], str] = {}
        for module, targets in imports.items():
            a = member(module)
            for target, line in targets.items():
                b = member(target)
                if a is not None and b is not None and a != b:
                    edges.setdefault(a, set()).add(b)
                    where.setdefault((a, b), f"{modules[module].relative_to(src)}:{line} imports {target}")
        nodes = sorted({m for m in map(member, modules) if m is not None})
        for circle in _circles(nodes, edges):
            inside = sorted(where[(a, b)] for a in circle for b in circle if (a, b) in where)
            report.append(f"{package}: {' <-> '.join(circle)} ({'; '.join(inside)})")
    return report


def upward_imports(src: Path = SRC) -> list[str]:
    """Each import of a package's ``__init__`` from a module inside it (``from .. import __version__``):
    the ``__init__`` is the top of its package and imports the rest; what a module needs from it
    belongs in a module of its own below (as ``version.py``)."""
    modules = _modules(src)
    found = []
    for name, path in modules.items():
        for target, line in _imported(name, path, modules).items():
            if modules[target].name == "__init__.py" and name.startswith(target + "."):
                found.append(f"{path.relative_to(src)}:{line} imports {target} (its package's __init__)")
    return sorted(found)


def long_functions(src: Path = SRC, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method of more than ``limit`` lines (decorators and docstring included), longest first."""
    found = []
    for path in sorted((src / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                n = (node.end_lineno or node.lineno) - first + 1
                if n > limit:
                    found.append((n, f"{path.relative_to(src)}:{node.lineno} {node.name} ({n} lines)"))
    return [text for _, text in sorted(found, reverse=True)]


def test_no_import_circle_inside_a_package():
    circles = package_circles()
    assert not circles, ("import circles inside a package (move what both sides use into a lower module, not "
                         "into a function):\n" + "\n".join(circles))


def test_no_module_imports_its_packages_root():
    upward = upward_imports()
    assert not upward, "modules reaching up to their package's __init__:\n" + "\n".join(upward)


def test_no_function_longer_than_the_limit():
    long = long_functions()
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n"
                      + "\n".join(long))


def test_the_layout_checks_find_what_they_look_for(tmp_path):
    """The checks themselves: a circle between two modules, one through a package's root, one written
    inside a function, and a long function are each found and named; an import for annotations only is not."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .version import __version__\nfrom . import sub\n")
    (pkg / "version.py").write_text("__version__ = '0'\n")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("from .b import B\nA = 1\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .a import A\n    return A\n")
    (pkg / "sub" / "c.py").write_text("from .. import __version__\n")
    (pkg / "sub" / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import E\n")
    (pkg / "sub" / "e.py").write_text("from .d import D\n")
    (pkg / "long.py").write_text("@staticmethod\ndef long():\n" + "    x = 1\n" * 120)
    circles = package_circles(tmp_path)
    assert any(c.startswith("clipunlearn.sub: clipunlearn.sub.a <-> clipunlearn.sub.b (") and "sub/b.py:2" in c
               for c in circles), circles  # the import inside a function counts
    assert any(c.startswith("clipunlearn: clipunlearn <-> clipunlearn.sub (") for c in circles), circles
    assert not any("sub.d" in c for c in circles), circles  # annotations only
    assert upward_imports(tmp_path) == ["clipunlearn/sub/c.py:1 imports clipunlearn (its package's __init__)"]
    assert long_functions(tmp_path) == ["clipunlearn/long.py:2 long (122 lines)"]

"""The layer graph of `sglang_sage_ext` (stdlib `ast` only, nothing is imported).

    python3 bench/tools/import_graph.py            # modules per layer + layer -> layer edges
    python3 bench/tools/import_graph.py --modules  # also every module -> its project imports

Layers, arrows pointing down only (tests/test_layers.py enforces `ALLOWED`):

    bootstrap -> integration -> backend -> kernels        cli beside (anything but bootstrap
                                                           internals), cpu on its own
    leaves (package.py, env.py, the package root): importable from every layer, import nothing

An import counts wherever it is written (module level or inside a function), and so do
"sglang_sage_ext.x.y[:attr]" string targets (hooks.py's "module:function" patch targets, also
spelled as f-strings over a module-level constant).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

PKG = "sglang_sage_ext"
ROOT = Path(__file__).resolve().parents[2]
PKG_DIR = ROOT / PKG
LEAVES = {PKG, f"{PKG}.package", f"{PKG}.env"}
LAYERS = ("bootstrap", "integration", "backend", "kernels", "cli", "cpu", "leaf")
#: layer -> the layers its modules may import (itself included where listed)
ALLOWED: dict[str, set[str]] = {
    "bootstrap": {"integration"},
    "integration": {"integration", "backend", "kernels", "leaf"},
    "backend": {"backend", "kernels", "leaf"},
    "kernels": {"kernels", "leaf"},
    "cpu": {"cpu", "leaf"},
    # cli may read the bootstrap's public `state`/`disabled()`, never its `_private` names
    "cli": {"cli", "integration", "backend", "kernels", "cpu", "leaf", "bootstrap"},
    "leaf": set(),
}
_TARGET = re.compile(rf"{PKG}(\.\w+)*(:\w+)?")


def layer_of(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    if module == f"{PKG}._bootstrap":
        return "bootstrap"
    part = module.split(".")[1]
    if part in LAYERS:
        return part
    raise ValueError(f"{module}: no layer (add it to tests/test_layers.py's layer map)")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package."""
    out = {}
    for path in sorted(PKG_DIR.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The longest prefix of `name` that is a project module (`a.b.attr` -> `a.b`)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _string_value(node: ast.AST, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"{_PATCHES}.cli:apply"
        out = []
        for part in node.values:
            if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name):
                if part.value.id not in consts:
                    return None
                out.append(consts[part.value.id])
            elif isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                return None
        return "".join(out)
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """Project modules `module` imports -> first line number (imports anywhere + string targets)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        if name == PKG or name.startswith(PKG + "."):
            target = _resolve(name, known)
            if target != module:
                found.setdefault(target, line)

    consts = {
        t.id: v
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and (v := _string_value(node.value, {})) is not None
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..y import z
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node.lineno)
        elif (value := _string_value(node, consts)) is not None and _TARGET.fullmatch(value):
            add(value.split(":")[0], node.lineno)
    return found


def private_uses(path: Path, module_alias: str) -> list[str]:
    """`_name` attributes read off `module_alias` (e.g. `_bootstrap._finder`) in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return sorted(
        {
            f"{module_alias}.{n.attr}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == module_alias
            and n.attr.startswith("_")
        }
    )


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def violations(g: dict[str, dict[str, int]] | None = None) -> list[str]:
    g = graph() if g is None else g
    known = modules()
    out = []
    for mod, targets in g.items():
        src = layer_of(mod)
        for target, line in sorted(targets.items()):
            dst = layer_of(target)
            if dst == src and src != "leaf":
                continue
            if dst not in ALLOWED[src]:
                out.append(f"{mod}:{line} ({src}) imports {target} ({dst})")
            elif dst == "bootstrap":
                alias = target.rsplit(".", 1)[1]
                for use in private_uses(known[mod], alias):
                    out.append(f"{mod}: uses bootstrap internal {use}")
    return out


def module_table(g: dict[str, dict[str, int]]) -> str:
    short = lambda m: m.removeprefix(PKG + ".") or PKG  # noqa: E731
    width = max(len(short(m)) for m in g)
    lines = [f"{'module':{width}}  layer        imports (project modules)"]
    for mod, targets in g.items():
        names = ", ".join(short(t) for t in sorted(targets)) or "-"
        lines.append(f"{short(mod):{width}}  {layer_of(mod):11}  {names}")
    return "\n".join(lines)


def layer_summary(g: dict[str, dict[str, int]]) -> str:
    counts = Counter(layer_of(m) for m in g)
    edges: Counter[tuple[str, str]] = Counter()
    for mod, targets in g.items():
        for target in targets:
            a, b = layer_of(mod), layer_of(target)
            if a != b:
                edges[a, b] += 1
    lines = ["layer        modules", *(f"{name:12} {counts[name]:7}" for name in LAYERS)]
    lines += ["", "layer -> layer          imports"]
    lines += [f"{a:11} -> {b:11} {n:7}" for (a, b), n in sorted(edges.items())]
    bad = violations(g)
    lines += ["", f"upward or forbidden imports: {len(bad)}", *bad]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    g = graph()
    if "--modules" in argv:
        print(module_table(g), end="\n\n")
    print(layer_summary(g))
    return 1 if violations(g) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

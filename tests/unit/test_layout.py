"""The layout's promises, checked on the source: imports flow one way, and every import resolves.

Layers, lowest first (ARCHITECTURE.md): a module may import its own layer and those below,
never above; lazy imports inside functions count too. The few same-layer edges that must not
exist are listed in FORBIDDEN.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cnnkit"
LAYERS = [
    {"errors", "io", "config", "plots", "decision"},
    {"data", "models", "engine"},
    {"runs", "hubfolder", "predict"},
    {"training", "evaluation"},
    {"tuning", "explain", "report", "export"},
    {"serve"},
    {"commands", "cli", "__init__", "__main__"},
]
# (importer, imported): edges inside a layer, or rules of their own (serve never trains or tunes).
FORBIDDEN = {("evaluation", "training"), ("explain", "report"), ("explain", "tuning"), ("export", "tuning"),
             ("serve", "training"), ("serve", "tuning"), ("report", "tuning")}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imports() -> list[tuple[str, str, int]]:
    """(importer's top-level part, imported cnnkit module, line) for every import in the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        importer = ".".join(rel.parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "cnnkit" else [f"cnnkit.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            out += [(importer, n, node.lineno) for n in names if n == "cnnkit" or n.startswith("cnnkit.")]
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts <= set().union(*LAYERS), f"add {sorted(parts - set().union(*LAYERS))} to LAYERS (and ARCHITECTURE.md)"


def _flow_problem(importer: str, imported: str) -> str | None:
    src, dst = _top(importer), _top(imported)
    if imported in ("cnnkit", "cnnkit.__version__") or src == dst:
        return None
    if _layer(dst) > _layer(src):
        return f"{dst} is above {src}"
    if (src, dst) in FORBIDDEN:
        return f"{src} must not depend on {dst}"
    if dst == "commands" and src != "cli":
        return "nothing but the CLI imports commands"
    return None


def test_imports_flow_one_way():
    problems = [f"{importer} line {line} imports {imported}: {why}" for importer, imported, line in _imports()
                if (why := _flow_problem(importer, imported))]
    assert not problems, "\n".join(problems)


def test_flow_check_catches_an_upward_import():
    assert _flow_problem("cnnkit.data.folders", "cnnkit.training.run") == "training is above data"
    assert _flow_problem("cnnkit.evaluation.compare", "cnnkit.serve.app") == "serve is above evaluation"
    assert _flow_problem("cnnkit.serve.app", "cnnkit.training.run") == "serve must not depend on training"
    assert _flow_problem("cnnkit.commands.train_cmd", "cnnkit.training.run") is None


def test_imports_resolve():
    """Lazy imports inside functions run only on some paths: a stale one would fail a user, not import time."""
    missing = [f"{importer} line {line}: no module {imported}" for importer, imported, line in _imports()
               if imported != "cnnkit.__version__" and importlib.util.find_spec(imported) is None]
    assert not missing, "\n".join(missing)

"""The layout's rules (docs/architecture.md): the import contracts, no private names across modules, no aliases used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "tasks", "schedulers", "profiles", "leaderboard")


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "results" in path.relative_to(ROOT).parts:
                continue
            yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_import_contracts_hold():
    """import-linter's layers and forbidden contracts from pyproject.toml (also run by `lint-imports`)."""
    r = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_module_imports_another_modules_private_name():
    """`from m import _x` and `m._x` across modules: a private name is its module's own business."""
    offences = []
    for path, name in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()  # names bound to project modules in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES and node.level == 0:
                for alias in node.names:
                    if _is_module(f"{node.module}.{alias.name}"):
                        modules.add(alias.asname or alias.name)
                    elif alias.name.startswith("_") and not alias.name.startswith("__") and node.module != name:
                        offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        modules.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in modules:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


def _lint_copy(tmp_path, files: dict[str, str]):
    """import-linter on a copy of the packages with `files` added (path relative to the root -> source)."""
    import shutil

    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("results", "data", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_the_contracts_catch_wrong_arrows(tmp_path):
    """The contracts are live: a module of the foundation that imports the engine, a scheduler module that names
    an engine type only for the type checker, the run path importing the sandbox, and two leaderboard modules
    importing each other each break one."""
    r = _lint_copy(tmp_path, {
        "bench/core/wrong.py": "from bench.engine import slotted\n",
        "schedulers/wrong_types.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.engine.costs import CostModel\n",
        "bench/experiments/runs/wrong_run.py": "from bench.experiments.sandbox import confine\n",
        "leaderboard/wrong_a.py": "from leaderboard import wrong_b\n",
        "leaderboard/wrong_b.py": "from leaderboard import wrong_a\n",
    })
    assert r.returncode != 0, r.stdout[-3000:]
    for arrow in ("bench.core.wrong -> bench.engine.slotted", "schedulers.wrong_types -> bench.engine.costs",
                  "bench.experiments.runs.wrong_run -> bench.experiments.sandbox.confine"):
        assert arrow in r.stdout, (arrow, r.stdout[-4000:])
    assert "wrong_a" in r.stdout and "wrong_b" in r.stdout and "No circles" in r.stdout and "BROKEN" in r.stdout.split("No circles")[1][:200], r.stdout[-4000:]

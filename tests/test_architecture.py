"""The package's shape (issue: architecture): the import layers of ``.importlinter`` hold, and
no Python module or function grows past the size an afternoon's reading allows."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "spikedistill"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_import_layers_hold(capsys):
    cli = pytest.importorskip("importlinter.cli")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the contract file and the package as installed for development
    try:
        code = cli.lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True)
    finally:
        os.chdir(cwd)
    assert code == 0, capsys.readouterr().out


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(SOURCE)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long


def test_checkpoint_io_loads_nothing_else_of_the_package():
    code = (
        "import sys, spikedistill.checkpoint; "
        "print(sorted(m for m in sys.modules if m.startswith('spikedistill')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.strip()
    expected = [
        "spikedistill",
        "spikedistill.checkpoint",
        "spikedistill.errors",
        "spikedistill.files",
    ]
    assert loaded == str(expected)

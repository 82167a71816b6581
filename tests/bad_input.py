"""The check every bad-input row makes: exit status 2, one line on stderr naming the mistake,
no traceback, and nothing changed on disk under the watched folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

from spikedistill.cli import main


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (and folder) under ``roots`` with a hash of its bytes."""
    files = {}
    for root in map(Path, roots):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            key = str(path)
            files[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def expect_one_line_error(argv: list[str], message: str, capsys, watch=(), status: int = 2) -> str:
    """Run the CLI on ``argv``; assert the contract; return the error line."""
    before = snapshot(*watch)
    capsys.readouterr()
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikedistill: error: "), err
    assert "Traceback" not in err
    assert message in err, err
    assert snapshot(*watch) == before, "files changed on disk"
    return err

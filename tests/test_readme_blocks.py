"""Every README block marked runnable runs as written (issue 26).

A marker is an HTML comment on the line before the block's fence (invisible on GitHub):

- ``<!-- runnable -->``: every command of a ``bash`` block, or the whole ``python`` block;
- ``<!-- runnable, except line 3 (why) -->``: the same without the block's line 3 (1-based,
  counted from the line after the fence; several as ``lines 2, 4``), for a command that needs
  what a test cannot have (a real dataset, a GPU, hours).

The marked blocks run in README order in one temporary folder, as a user would run them one
after another from the root of a clone (``configs`` there is a link to the repository's, so
the examples' ``configs/...`` paths resolve). Nothing is rewritten but the data: ``DATA`` of
``--data-dir DATA`` becomes a folder holding four tiny MNIST IDX files (256 training, 40 test
images, ``tests/conftest.py``'s ``write_mnist``), and ``$SPIKEDISTILL_DATA`` names an empty
folder, so a command that needs the data and does not say ``--data-dir`` fails. The shipped
MNIST recipes then take two batches per epoch, so the training commands run unchanged (no fewer
epochs, no subset).

Shell blocks: each command (comment lines skipped, ``\\`` continuations joined) runs with
``bash -c``, with the virtual environment's ``spikedistill`` first on ``PATH``, and must exit
with status 0. Python blocks: exec'd in one namespace per ``##`` section (so "Bring your own
SNN" continues "From Python", as the README says), with that temporary folder as the working
directory; tracebacks name README lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import write_mnist

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(
    r"<!-- runnable(?:, except lines? (?P<skip>\d+(?:, \d+)*) \((?P<why>[^)]+)\))? -->"
)
MNIST_TRAIN, MNIST_TEST = 256, 40


@dataclass
class Block:
    lang: str  # "bash" or "python"
    section: str  # the "## " heading it sits under
    line: int  # README line number of its first code line
    lines: list[str]  # the code lines
    skip: frozenset[int]  # 1-based line numbers within the block not to run


def marked_blocks(text: str) -> list[Block]:
    """The blocks marked runnable, in README order; a marker that does not parse, or that is
    not followed by a ``bash`` or ``python`` fence, fails the test rather than being skipped."""
    lines = text.splitlines()
    blocks, section, in_code, i = [], "", False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("## "):
            section = line[3:].strip()
        elif not in_code and "runnable" in line and line.lstrip().startswith("<!--"):
            match = MARKER.fullmatch(line.strip())
            assert match, f"README.md:{i + 1}: marker not understood: {line!r}"
            fence = lines[i + 1] if i + 1 < len(lines) else ""
            lang = fence[3:].strip()
            assert fence.startswith("```") and lang in ("bash", "python"), (
                f"README.md:{i + 1}: a runnable marker must precede a bash or python fence"
            )
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            skip = match["skip"] or ""
            skip_lines = frozenset(int(n) for n in skip.split(", ") if n)
            assert all(1 <= n <= end - i - 2 for n in skip_lines), f"README.md:{i + 1}"
            blocks.append(Block(lang, section, i + 3, lines[i + 2 : end], skip_lines))
            i = end
        i += 1
    return blocks


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a shell block: comment and blank lines
    dropped, ``\\`` continuations joined, the marker's skipped lines left out."""
    commands, pending, first = [], "", 0
    for n, line in enumerate(block.lines, start=1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            first = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command, pending = pending + line, ""
        if first not in block.skip:
            commands.append((block.line + first - 1, command))
    assert not pending, f"README.md:{block.line}: a continuation runs past the block"
    return commands


def with_data(command: str, data: Path) -> str:
    """The one rewrite: the ``DATA`` placeholder of ``--data-dir DATA`` becomes ``data``."""
    return re.sub(r"(--data-dir )DATA\b", lambda m: m[1] + str(data), command)


def has_spikingjelly() -> bool:
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        return False
    return True


def test_markers_cover_the_runnable_examples():
    blocks = marked_blocks(README.read_text(encoding="utf-8"))
    sections = {b.section for b in blocks}
    assert {"Training teachers and SNN students", "Your own models"} <= sections
    assert any(b.lang == "bash" for b in blocks) and any(b.lang == "python" for b in blocks)


def test_marked_readme_blocks_run_as_written(tmp_path, monkeypatch):
    data, work = tmp_path / "data", tmp_path / "work"
    write_mnist(data, MNIST_TRAIN, MNIST_TEST)
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    cli = Path(sys.executable).parent / "spikedistill"
    assert cli.is_file(), f"no spikedistill next to {sys.executable}"
    # only the CLI goes first on PATH, not the whole venv's bin: its `ninja` (PyPI, log v7)
    # beside the system's (1.11) would make the C++ kernels rebuild (~20 s) at each switch
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/spikedistill").symlink_to(cli)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPIKEDISTILL_DATA": str(tmp_path / "no-data"),  # a command without --data-dir fails
    }
    monkeypatch.chdir(work)
    namespaces: dict[str, dict] = {}
    for block in marked_blocks(README.read_text(encoding="utf-8")):
        if block.lang == "python":
            if "spikingjelly" in "\n".join(block.lines) and not has_spikingjelly():
                continue  # an optional extra; the blocks after it still run
            # blank lines in front, so that tracebacks give README line numbers
            code = "\n" * (block.line - 1) + "\n".join(block.lines)
            exec(compile(code, str(README), "exec"), namespaces.setdefault(block.section, {}))
            continue
        for line, command in shell_commands(block):
            result = subprocess.run(
                ["bash", "-c", with_data(command, data)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (
                f"README.md:{line}: `{command}` exited with {result.returncode}:\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )

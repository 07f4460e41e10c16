"""The README's Python example runs as written (a fresh process, its own folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(# the Python API.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "README.md should hold one '# the Python API' example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done Done: HELLO TEAM"
    assert (tmp_path / "team.db").exists()  # the store it named, durable

"""The README's embedding example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_embedding_example_runs(tmp_path):
    text = README.read_text()
    block = re.search(r"```python\n(from virtsdk\.cloud import EmbeddedCloud.*?)```", text,
                      re.S)
    assert block, "the README lost its embedding example"
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    out = subprocess.run([sys.executable, "-W", "ignore", str(script)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "status=<MigrationStatus.COMPLETED: 'completed'>" in out.stdout

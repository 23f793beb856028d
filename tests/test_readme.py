"""The README's Python examples run as written."""

import re
from pathlib import Path


def test_readme_python_example_runs(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    for block in blocks:  # the examples build on each other, as a reader runs them
        exec(compile(block, "README.md", "exec"), namespace)
    assert "samples =" in capsys.readouterr().out

"""Speed of this working tree against another commit, measured in one run.

`codecstream bench` runs alternately on the two trees (A, B, A, B, ...), so both see the same
machine load; the table shows the median of each figure and B's ratio to A. Used to check that
a refactor costs nothing:

    python demos/bench_commits.py --base ef35b78 --model encodec-24khz snac-24khz --rounds 3

The base commit is exported with `git archive` into a temporary folder and imported from there
(`codecstream` is `engine/`, `codecstream.models` is `models/`, rebuilt as that layout with
symbolic links), so nothing in the working tree changes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "offline roundtrip (s per s of audio)": lambda r: r["offline"]["roundtrip_s"] / r["seconds"],
    "20 ms encode->decode (s per s)": lambda r: r["streaming"][0]["total_s"] / r["seconds"],
    "20 ms encode->decode chunk p50 (ms)": lambda r: r["streaming"][0]["chunk_p50_ms"],
    "20 ms decode (s per s)": lambda r: r["streaming_decode"][0]["total_s"] / r["seconds"],
}


def installed_layout(source: Path, into: Path) -> Path:
    """``into/codecstream`` → ``source/engine`` (entries linked one by one) with ``models``."""
    package = into / "codecstream"
    package.mkdir(parents=True)
    for entry in (source / "engine").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "models").symlink_to(source / "models")
    return into


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def bench(path: Path, model: str, seconds: float, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path)}
    command = [
        sys.executable, "-c", "import sys; from codecstream.commands.cli import main; sys.exit(main())",
        "bench", "--model", model, "--weights", "random", "--seconds", str(seconds), "--chunk-ms", "20",
        "--repeats", "3", "--no-reference", "--json", str(out),
    ]
    subprocess.run(command, check=True, env=env, cwd=path, capture_output=True)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (A)")
    parser.add_argument("--model", nargs="+", default=["encodec-24khz", "snac-24khz"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="where to write every run's figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        trees = {
            f"A {args.base}": installed_layout(export(args.base, work), work / "a"),
            "B working tree": installed_layout(ROOT, work / "b"),
        }
        runs: dict[str, dict[str, list[dict]]] = {model: {label: [] for label in trees} for model in args.model}
        for round_index in range(args.rounds):
            for model in args.model:
                for label, path in trees.items():
                    runs[model][label].append(bench(path, model, args.seconds, work / "out.json"))
                    print(f"round {round_index + 1}/{args.rounds} {model} {label}: done", file=sys.stderr)
    (label_a, label_b) = list(trees)
    for model, by_tree in runs.items():
        print(f"\n{model}, median of {args.rounds} alternating runs ({args.seconds:g} s signal, float32, random weights)")
        print(f"  {'figure':40} {label_a:>18} {label_b:>18} {'B / A':>7}")
        for name, figure in FIGURES.items():
            a = statistics.median(figure(r) for r in by_tree[label_a])
            b = statistics.median(figure(r) for r in by_tree[label_b])
            print(f"  {name:40} {a:18.4f} {b:18.4f} {b / a:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

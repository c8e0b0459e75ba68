"""Timing benchmark for the pytest plugin's collection (not a test; prints wall-clock timings).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_collect.py [--suites 20] [--repeats 5]

Writes SUITES suites (3 gates, 2 scorers, 200 chat cases each) and a fake-backend models.toml
to a temporary directory, then times `pytest --collect-only -q suites` in a fresh interpreter:
  * collection: pytest's own "collected in X s" (session start to end of collection);
  * wall: the whole command, interpreter start and plugin loading included.
For scale it also times the command with `-p no:hypothesispytest` (Hypothesis's plugin imports
Hypothesis in every terminal summary, ~0.6 s here) and with both that and `-p no:harness` (nothing
collected: the floor set by pytest itself). Target: collection < 1 s for 20 suites.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES_PER_SUITE = 200


def write_project(root: Path, n_suites: int) -> None:
    (root / "models.toml").write_text(
        '[defaults]\nbackend = "fake"\nmodel = "fake-model"\n\n'
        '[variants.base]\nfake = {default = "no idea"}\n\n'
        '[variants.fewshot]\nfewshot = 2\nfake = {default = "no idea"}\n\n'
        '[variants.tuned]\nfake = {echo = true}\n'
    )
    (root / "pytest.ini").write_text("[pytest]\n")
    data = root / "suites" / "data"
    data.mkdir(parents=True)
    for s in range(n_suites):
        rows = [{"id": f"s{s}c{i}", "messages": [{"role": "user", "content": f"suite {s} case {i}"},
                                                  {"role": "assistant", "content": f"suite {s} case {i}"}]}
                for i in range(CASES_PER_SUITE)]
        (data / f"s{s:02d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / "suites" / f"s{s:02d}.yaml").write_text(
            f"suite: s{s:02d}\n"
            f"data: {{path: data/s{s:02d}.jsonl, holdout: 0.5, seed: {s}}}\n"
            "variants: [base, fewshot, tuned]\n"
            "generation: {max_tokens: 32}\n"
            "scorers:\n  accuracy: exact_match\n  format: {max_words: 20}\n"
            f"marks: [{'slow' if s % 2 else 'nightly'}]\n"
            "gates:\n"
            "  - tuned.accuracy > fewshot.accuracy\n"
            "  - tuned.accuracy >= base.accuracy - 0.02\n"
            "  - tuned.format >= 0.95\n"
        )


def run_once(root: Path, extra: list[str]) -> tuple[float, float | None, str]:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "suites", *extra]
    env = {**os.environ, "HARNESS_CACHE_DIR": str(root / "cache")}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()
    match = re.search(r"in ([0-9.]+)s", last)
    if done.returncode not in (0, 5):  # 5: nothing collected (the -p no:harness floor)
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, float(match.group(1)) if match else None, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        root = Path(tmp)
        write_project(root, args.suites)
        print(f"{args.suites} suites x 3 gates, {CASES_PER_SUITE} cases each; repeats={args.repeats}; "
              f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
        for label, extra in [("plugin", []), ("plugin, -p no:hypothesispytest", ["-p", "no:hypothesispytest"]),
                             ("floor: no harness, no hypothesis plugin", ["-p", "no:harness", "-p", "no:hypothesispytest"])]:
            run_once(root, extra)  # warm-up (OS file cache)
            results = [run_once(root, extra) for _ in range(args.repeats)]
            walls = [w for w, _, _ in results]
            collects = [c for _, c, _ in results if c is not None]
            print(f"{label:<42s} collection median {statistics.median(collects):6.3f} s (best {min(collects):.3f})"
                  f"   wall median {statistics.median(walls):6.3f} s (best {min(walls):.3f})   [{results[-1][2]}]")


if __name__ == "__main__":
    main()

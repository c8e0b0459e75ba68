"""How much work an interruption can lose with the real default model (issue 19, finding 8).

Runs `harness run suites/tickets.yaml --variants base --limit N` (transformers backend, SmolLM2-135M)
against a fresh cache, polls the cache while it generates, and reports how often results are committed
(the seconds between commits and the requests per commit: the most a kill can lose), then kills the run
with SIGKILL at a random moment, checks SQLite's integrity_check, resumes, and counts what the resumed
run generated (each request once: generated = total - committed before the kill).

    PYTHONPATH=$PWD python benchmarks/bench_interruption.py --limit 48 --kill-after 40
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rows(cache: Path) -> int:
    try:
        with sqlite3.connect(cache, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--kill-after", type=float, default=40.0, help="seconds after the first commit")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-interruption-"))
    cache = work / "cache.sqlite"
    command = [sys.executable, "-m", "harness.cli", "run", "suites/tickets.yaml", "--variants", "base",
               "--limit", str(args.limit), "--no-progress", "--no-baselines", "--cache", str(cache),
               "--out", str(work / "runs")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # 1. Commit cadence of a full run.
    started = time.time()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    commits: list[tuple[float, int]] = []
    last = 0
    while proc.poll() is None:
        time.sleep(0.2)
        now = rows(cache) if cache.exists() else 0
        if now != last:
            commits.append((time.time() - started, now - last))
            last = now
    proc.communicate()
    gaps = [b[0] - a[0] for a, b in zip(commits, commits[1:], strict=False)]
    print(json.dumps({"requests": last, "commits": len(commits), "requests_per_commit_max": max(n for _, n in commits),
                      "seconds_between_commits_max": round(max(gaps), 1) if gaps else None,
                      "seconds_total": round(time.time() - started, 1)}))

    # 2. kill -9 mid-run, integrity, resume.
    cache.unlink()
    for extra in ("-wal", "-shm"):
        Path(str(cache) + extra).unlink(missing_ok=True)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while rows(cache) == 0 and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(args.kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = rows(cache)
    with sqlite3.connect(cache) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    manifest = json.loads((Path(resumed.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    counts = manifest["counts"]
    print(json.dumps({"committed_before_kill": committed, "integrity_check": integrity,
                      "resumed_cached": counts["cached"], "resumed_generated": counts["generated"],
                      "duplicated": counts["cached"] + counts["generated"] - counts["requests"]}))


if __name__ == "__main__":
    main()

"""Cost of the full-content model fingerprint (not a test; prints timings).

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_fingerprint.py [--mb 500] [--dir /tmp]

Writes a model directory with a config.json and one random weight file of `--mb` megabytes to a temp
directory (under `--dir`), then times `harness.backends.identity.model_fingerprint` on it:
  1. first hash: every byte read and hashed (sha256), the result memoised in the cache dir's hashes.json
  2. memoised: the same call again (a stat and a memo lookup)
  3. after an in-place rewrite of 4 KB in the middle (same size): the whole file is hashed again
The page cache is warm for (1) and (3) (the file was just written): on a cold disk the first hash is
bounded by the disk's read speed instead. A private cache dir is used (HARNESS_CACHE_DIR), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the weight file in MB (default 500)")
    parser.add_argument("--dir", default=None, help="where to write the temp model (default: the temp dir)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fingerprint-", dir=args.dir))
    os.environ["HARNESS_CACHE_DIR"] = str(root / "cache")
    from harness.backends.identity import model_fingerprint

    try:
        model = root / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "llama"}')
        weights = model / "model.safetensors"
        block = os.urandom(1 << 20)
        with weights.open("wb") as handle:
            for _ in range(args.mb):
                handle.write(block)
        size_mb = weights.stat().st_size / 1e6

        def timed() -> tuple[str, float]:
            started = time.perf_counter()
            fingerprint = model_fingerprint(str(model))
            return fingerprint, time.perf_counter() - started

        first, t_first = timed()
        again, t_again = timed()
        with weights.open("r+b") as handle:
            handle.seek(weights.stat().st_size // 2)
            handle.write(os.urandom(4096))
        changed, t_changed = timed()
        assert first == again != changed
        print(f"weight file: {size_mb:.0f} MB ({weights})")
        print(f"first hash:        {t_first:8.3f} s  {size_mb / t_first:8.0f} MB/s")
        print(f"memoised:          {t_again:8.4f} s  ({t_first / max(t_again, 1e-9):.0f}x faster)")
        print(f"after a rewrite:   {t_changed:8.3f} s  {size_mb / t_changed:8.0f} MB/s  (fingerprint changed)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Cache identity that cannot go stale: local weights are fingerprinted by their full content (memoised by
path, size, mtime, ctime and inode), and every engine's identity carries the implementation that computes
its outputs, so a changed model or changed harness code is never answered from old outputs - neither from
the cache nor from a blessed baseline."""

from __future__ import annotations

import json
import os
import struct

import pytest

import harness.config.files as files
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache, cache_dir
from harness.engine.runner import RunOptions, run_suites
from tests.engine.test_runner import run_project
from tests.helpers import chat_rows, write, write_jsonl


def _overwrite_middle(path, *, keep_mtime: bool) -> None:
    """Rewrite 64 float32 weights in the middle of a safetensors file in place: same size, same inode."""
    stat = path.stat()
    with path.open("r+b") as handle:
        header = struct.unpack("<Q", handle.read(8))[0]
        start = 8 + header
        middle = start + ((stat.st_size - start) // 2) // 4 * 4
        handle.seek(middle)
        handle.write(struct.pack("<64f", *([0.37] * 64)))
    if keep_mtime:  # a copy tool that preserves timestamps: only the ctime tells
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert after.st_size == stat.st_size and after.st_ino == stat.st_ino


@pytest.fixture
def tiny_project(tmp_path):
    from tests.tiny_model import build_llama

    model = build_llama(tmp_path / "model", adds_bos=True, seed=2, hidden=256)
    assert (model / "model.safetensors").stat().st_size > 4 << 20  # its middle lies beyond the first/last MB
    write_jsonl(tmp_path / "suites" / "data" / "arith.jsonl", chat_rows(6))
    write(tmp_path / "models.toml", f"""
        [defaults]
        model = "{model}"
        backend = "transformers"
        engine = {{ dtype = "float32" }}

        [variants.base]
    """)
    write(tmp_path / "suites" / "arith.yaml", """
        suite: arith
        data: {path: data/arith.jsonl}
        variants: [base]
        generation: {max_tokens: 6}
        scorers:
          accuracy: exact_match
    """)
    return tmp_path


def _run(project, cache):
    models = load_models(project / "models.toml")
    suite = load_suite(project / "suites" / "arith.yaml", known_variants=set(models.variants))
    return run_suites([suite], models, RunOptions(out_root=project / "runs", progress=False), cache=cache,
                      log=lambda s: None)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_weights_overwritten_in_place_are_regenerated(tiny_project, keep_mtime):
    cache = GenerationCache(tiny_project / "cache.sqlite")
    first = _run(tiny_project, cache)
    assert not first.errors and first.manifest["counts"]["generated"] == 6
    again = _run(tiny_project, cache)
    assert again.manifest["counts"]["generated"] == 0 and again.manifest["counts"]["cached"] == 6
    _overwrite_middle(tiny_project / "model" / "model.safetensors", keep_mtime=keep_mtime)
    changed = _run(tiny_project, cache)
    assert not changed.errors
    assert changed.manifest["counts"]["cached"] == 0 and changed.manifest["counts"]["generated"] == 6
    fingerprints = {r.manifest["runs"]["arith/base"]["engine_fingerprint"] for r in (first, again, changed)}
    assert len(fingerprints) == 2


def test_full_content_hash_is_memoised_and_sees_every_byte(tmp_path, monkeypatch):
    from harness.backends.identity import model_fingerprint

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    weights = model / "model.safetensors"
    header = json.dumps({"__metadata__": {}}).encode()
    weights.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8 << 20))  # 8 MB, beyond the old samples
    reads = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda path, **kw: reads.append(path.name) or real(path, **kw))
    before = model_fingerprint(str(model))
    assert reads == ["config.json", "model.safetensors"]
    assert model_fingerprint(str(model)) == before and reads.count("model.safetensors") == 1  # memoised
    memo = json.loads((cache_dir() / files.MEMO_FILE).read_text())
    assert any(key.startswith(str(weights.resolve()) + "|") for key in memo)
    _overwrite_middle(weights, keep_mtime=True)
    assert model_fingerprint(str(model)) != before and reads.count("model.safetensors") == 2


def test_a_changed_backend_or_encoding_version_is_not_served_from_the_cache(project, monkeypatch):
    import harness.backends.base as base
    import harness.backends.fake as fake

    cache = GenerationCache(project / "cache.sqlite")
    first = run_project(project, cache=cache)
    assert first.manifest["counts"]["generated"] > 0
    assert run_project(project, cache=cache).manifest["counts"]["generated"] == 0
    monkeypatch.setattr(fake, "IMPLEMENTATION", "fake/999")
    bumped = run_project(project, cache=cache)
    assert bumped.manifest["counts"]["cached"] == 0 and bumped.manifest["counts"]["generated"] > 0
    assert bumped.manifest["runs"]["arith/base"]["implementation"]["backend"] == "fake/999"
    monkeypatch.setattr(base, "IMPLEMENTATION", "base/999")
    assert run_project(project, cache=cache).manifest["counts"]["cached"] == 0


def test_library_versions_are_part_of_a_local_backends_identity(monkeypatch):
    import harness.backends as backends
    from harness.backends import EngineSpec
    from harness.engine.runner import engine_fingerprint, engine_identity

    monkeypatch.setattr("harness.engine.runner.model_fingerprint", lambda model: f"weights:{model}")
    spec = EngineSpec(model="m", backend="transformers", engine=(("dtype", '"float32"'),))
    before, identity = engine_fingerprint(spec), engine_identity(spec)
    real = backends._library_version
    monkeypatch.setattr(backends, "_library_version", lambda name: "0.0.1" if name == "transformers" else real(name))
    assert engine_fingerprint(spec) != before and engine_identity(spec) == identity
    info = backends.implementation_info("transformers")
    assert info["transformers"] == "0.0.1" and info["backend"].startswith("transformers/")


def test_a_blessed_baseline_of_another_implementation_is_refused_naming_it(project, monkeypatch):
    import harness.backends.fake as fake
    from harness.analysis.baselines import bless

    first = run_project(project)
    bless(first.run_dir, ["base"], project / "baselines")
    cache = GenerationCache(project / "empty-cache.sqlite")
    reused = run_project(project, cache=cache, baselines=project / "baselines", variants=["base"])
    assert not reused.errors and all(r.get("blessed") for r in reused.records)
    old = fake.IMPLEMENTATION
    monkeypatch.setattr(fake, "IMPLEMENTATION", "fake/999")
    refused = run_project(project, cache=cache, baselines=project / "baselines", variants=["base"])
    (error,) = refused.errors
    assert f"the implementation that computed the outputs (backend {old} -> fake/999)" in error["error"]
    assert "model weights" not in error["error"]  # the weights did not change: the message says only what did
    assert "harness bless" in error["error"]

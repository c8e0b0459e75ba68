"""The bad-input catalogue (issue 19): each case breaks one input of a valid project and runs the real
CLI (`harness run`, or `harness models`) in-process. Every case must exit 2 with a message naming the
file and the line or key, print no traceback, and write nothing (no run directory, no cache).

Count the catalogue: `pytest tests/bad_inputs -q` (one test per bad input, plus the good-project check).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from bad_input_helpers import ROWS, Bad, cli_args, edit, put, snapshot
from typer.testing import CliRunner

from harness.cli import app

M, S, D, OUT = "models.toml", "suites/s.yaml", "suites/data/cases.jsonl", "outputs.jsonl"


def _suite(text: str):
    return lambda root: put(root, S, text)


def _data(text: str | bytes, rel: str = D):
    return lambda root: put(root, rel, text)


def _replace(rel: str, old: str, new: str):
    return lambda root: edit(root, rel, old, new)


def _models_add(text: str):
    def mutate(root):
        with (root / M).open("a", encoding="utf-8") as handle:
            handle.write(text)
    return mutate


def _mapped(fields: str, data_rel: str = "data/rows.jsonl"):
    """The suite reads a field-mapped file instead of chat data."""
    return _replace(S, "data: {path: data/cases.jsonl}", f"data: {{path: {data_rel}, fields: {fields}}}")


def _both(*mutations):
    def mutate(root):
        for m in mutations:
            m(root)
    return mutate


def _cache(content: bytes | None = None, *, directory: bool = False, sqlite_other: bool = False):
    def mutate(root):
        path = root / "cache" / "gen.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            path.mkdir()
        elif sqlite_other:
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE other (x)")
            conn.commit()
            conn.close()
        else:
            path.write_bytes(content)
    return mutate


ROW_LINES = [json.dumps(r) for r in ROWS]
CSV_SUITE = "data: {path: data/rows.csv, fields: {input: question, reference: answer, id: id}}"

CASES = [
    # ------------------------------------------------------------------ models.toml
    Bad("toml-syntax", "config", _replace(M, 'model = "fake-model"', 'model = "fake-model'), ["models.toml:3"]),
    Bad("toml-unknown-top-key", "config", _models_add("\n[varients.x]\n"), ["models.toml:", "varients"]),
    Bad("toml-unknown-variant-key", "config", _models_add('\n[variants.x]\nadaptr = "a"\n'), ["models.toml:", "variants.x.adaptr"]),
    Bad("toml-backend-typo", "config", _models_add('\n[variants.x]\nbackend = "vlm"\n'), ["models.toml:", "variants.x.backend"]),
    Bad("engine-typo-fake", "engine", _models_add("\n[variants.x]\nengine = {batch_sise = 4}\n"),
        ["models.toml:", "variants.x.engine.batch_sise", "batch_size"]),
    Bad("engine-typo-models-command", "engine", _models_add("\n[variants.x]\nengine = {batch_sise = 4}\n"),
        ["models.toml:", "variants.x.engine.batch_sise"], command="models"),
    Bad("engine-typo-transformers", "engine",
        _models_add('\n[variants.x]\nbackend = "transformers"\nengine = {batch_sise = 4}\n'),
        ["models.toml:", "variants.x.engine.batch_sise", "batch_size"], command="models"),
    Bad("engine-typo-vllm", "engine", _models_add('\n[variants.x]\nbackend = "vllm"\nengine = {tensor_paralel_size = 2}\n'),
        ["models.toml:", "variants.x.engine.tensor_paralel_size", "tensor_parallel_size"], command="models"),
    Bad("engine-typo-openai", "engine",
        _models_add('\n[variants.x]\nbackend = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:9"\n'
                    "engine = {batch_sise = 4}\n"), ["models.toml:", "variants.x.engine.batch_sise"], command="models"),
    Bad("engine-typo-in-defaults", "engine", _replace(M, 'model = "fake-model"\n', 'model = "fake-model"\nengine = {batch_sise = 2}\n'),
        ["models.toml:4", "defaults.engine.batch_sise"]),
    Bad("engine-subtable-typo", "engine", _models_add('\n[variants.x]\n[variants.x.engine]\ndtpe = "float32"\n'),
        ["models.toml:", "variants.x.engine.dtpe"]),
    Bad("engine-batch-size-type", "engine", _models_add('\n[variants.x]\nbackend = "transformers"\nengine = {batch_size = "8"}\n'),
        ["models.toml:", "variants.x.engine.batch_size", "int"]),
    Bad("engine-merge-adapters-type", "engine",
        _models_add('\n[variants.x]\nbackend = "transformers"\nengine = {merge_adapters = "no"}\n'),
        ["models.toml:", "variants.x.engine.merge_adapters"]),
    Bad("toml-fewshot-negative", "config", _models_add("\n[variants.x]\nfewshot = -1\n"), ["models.toml:", "variants.x.fewshot"]),
    Bad("toml-generation-key", "config", _models_add("\n[variants.x]\ngeneration = {max_tokns = 4}\n"),
        ["models.toml:", "variants.x.generation", "max_tokens"]),
    Bad("toml-temperature", "config", _models_add("\n[variants.x]\ngeneration = {temperature = -1}\n"),
        ["models.toml:", "variants.x.generation"]),
    Bad("toml-outputs-not-found", "config", _models_add('\n[variants.x]\noutputs = "nope.jsonl"\n'),
        ["models.toml:", "variants.x.outputs", "nope.jsonl"]),
    Bad("toml-adapter-not-found", "config", _models_add('\n[variants.x]\nadapter = "adapters/none"\n'),
        ["models.toml:", "variants.x.adapter"]),
    Bad("toml-missing-policy", "config", _models_add('\n[variants.x]\noutputs = "outputs.jsonl"\nmissing = "skip"\n'),
        ["models.toml:", "variants.x.missing"]),
    Bad("toml-allow-extra-type", "config", _models_add('\n[variants.x]\noutputs = "outputs.jsonl"\nallow_extra = "yes"\n'),
        ["models.toml:", "variants.x.allow_extra"]),
    Bad("toml-variant-name", "config", _models_add('\n[variants."a b"]\n'), ["models.toml:", "a b"]),
    Bad("toml-not-utf8", "encoding", _data("[defaults]\nbackend = \"fake\"\n# caf\xe9\n".encode("latin-1"), M),
        ["models.toml:3", "UTF-8"]),
    # ------------------------------------------------------------------ suite YAML
    Bad("yaml-unclosed-bracket", "suite", _replace(S, "variants: [base, rec]", "variants: [base, rec"), ["s.yaml:3"]),
    Bad("yaml-unclosed-quote", "suite", _replace(S, "suite: s", 'suite: "s'), ["s.yaml:1"]),
    Bad("yaml-bad-indent", "suite", _replace(S, "variants: [base, rec]\n", "variants: [base, rec]\n  oops: 1\n"), ["s.yaml:4"]),
    Bad("yaml-tab", "suite", _replace(S, "generation:", "\tgeneration:"), ["s.yaml:4"]),
    Bad("yaml-python-tag", "suite", _replace(S, "suite: s", "suite: !!python/object/apply:os.system [echo hi]"),
        ["s.yaml:1", "not allowed"]),
    Bad("yaml-function-tag", "suite", _replace(S, "accuracy: exact_match", "accuracy: !function utils.score"),
        ["s.yaml:7", "not allowed"]),
    Bad("yaml-not-utf8", "encoding", lambda root: (root / S).write_bytes((root / S).read_bytes() + b"# caf\xe9\n"),
        ["s.yaml:10", "UTF-8"]),
    Bad("suite-not-mapping", "suite", _suite("- a\n- b\n"), ["s.yaml", "mapping"]),
    Bad("suite-unknown-key", "suite", _replace(S, "scorers:", "scorer: {}\nscorers:"), ["s.yaml:5", "key 'scorer'"]),
    Bad("suite-no-data-path", "suite", _replace(S, "data: {path: data/cases.jsonl}", "data: {holdout: 0.2}"),
        ["s.yaml:2", "key 'data'"]),
    Bad("suite-data-not-found", "suite", _replace(S, "data/cases.jsonl", "data/none.jsonl"), ["s.yaml:2", "data.path"]),
    Bad("suite-holdout-range", "suite", _replace(S, "data: {path: data/cases.jsonl}", "data: {path: data/cases.jsonl, holdout: 1.5}"),
        ["s.yaml:2", "data.holdout"]),
    Bad("suite-unknown-variant", "suite", _replace(S, "[base, rec]", "[base, recc]"), ["s.yaml:3", "variants.1"]),
    Bad("suite-unknown-scorer", "suite", _replace(S, "accuracy: exact_match", "accuracy: exact_mach"),
        ["s.yaml:7", "scorers.accuracy", "exact_match"]),
    Bad("suite-unknown-scorer-option", "suite", _replace(S, "{json_schema: schemas/s.json}", "{json: {strct: true}}"),
        ["s.yaml:6", "scorers.format.json.strct"]),
    Bad("suite-bad-gate", "suite", _replace(S, "base.format >= 0.5", "base.format >=> 0.5"), ["s.yaml:9", "gates.0"]),
    Bad("suite-gate-unknown-variant", "suite", _replace(S, "base.format >= 0.5", "tuned.format >= 0.5"),
        ["s.yaml:9", "gates.0", "tuned"]),
    Bad("suite-alpha", "suite", _replace(S, "gates:", "alpha: 2\ngates:"), ["s.yaml:8", "alpha"]),
    Bad("suite-generation-key", "suite", _replace(S, "{max_tokens: 16}", "{max_token: 16}"), ["s.yaml:4", "generation.max_token"]),
    Bad("suite-max-tokens", "suite", _replace(S, "{max_tokens: 16}", "{max_tokens: 0}"), ["s.yaml:4", "generation.max_tokens"]),
    Bad("suite-json-strict-type", "suite", _replace(S, "gates:", "json_strict: maybe\ngates:"), ["s.yaml:8", "json_strict"]),
    Bad("suite-baseline", "suite", _replace(S, "gates:", "baseline: other\ngates:"), ["s.yaml:8", "baseline"]),
    Bad("suite-regex", "suite", _replace(S, "{json_schema: schemas/s.json}", "{regex: {must_match: '(unclosed'}}"),
        ["s.yaml:6", "must_match"]),
    Bad("suite-unknown-field", "suite", _both(_mapped("{input: q, refrence: a}"), _data('{"q": "hi"}\n', "suites/data/rows.jsonl")),
        ["s.yaml:2", "data.fields.refrence"]),
    Bad("template-syntax", "template",
        _both(_mapped("{template: 'Q: {{ question '}"), _data('{"q": "hi"}\n', "suites/data/rows.jsonl")),
        ["s.yaml:2", "data.fields.template", "template line 1"]),
    # ------------------------------------------------------------------ data files
    Bad("jsonl-invalid-line", "data", _data("\n".join(ROW_LINES[:2] + ['{"id": "q9", "messages": [}'] + ROW_LINES[2:]) + "\n"),
        ["cases.jsonl:3"]),
    Bad("jsonl-array-line", "data", _data("\n".join(ROW_LINES[:1] + ['[1, 2]'] + ROW_LINES[1:]) + "\n"), ["cases.jsonl:2"]),
    Bad("chat-no-messages", "data", _data("\n".join(ROW_LINES[:3] + ['{"id": "x", "prompt": "hi"}']) + "\n"),
        ["cases.jsonl:4", "messages"]),
    Bad("chat-bad-role", "data",
        _data("\n".join(ROW_LINES[:1] + ['{"id": "x", "messages": [{"role": "human", "content": "hi"}]}']) + "\n"),
        ["cases.jsonl:2", "role"]),
    Bad("chat-no-user-turn", "data",
        _data("\n".join(ROW_LINES[:1] + ['{"id": "x", "messages": [{"role": "assistant", "content": "hi"}]}']) + "\n"),
        ["cases.jsonl:2", "user"]),
    Bad("data-duplicate-id", "data", _data("\n".join(ROW_LINES + [ROW_LINES[1]]) + "\n"), ["cases.jsonl:5", "lines 2 and 5"]),
    Bad("data-not-utf8", "encoding", _data(("\n".join(ROW_LINES) + "\n").encode() + b'{"id": "caf\xe9"}\n'),
        ["cases.jsonl:5", "UTF-8"]),
    Bad("data-empty", "data", _data(""), ["cases.jsonl", "no rows"]),
    Bad("csv-missing-trailing-field", "data",
        _both(_replace(S, "data: {path: data/cases.jsonl}", CSV_SUITE), _data("id,question,answer\n1,What is 1?,1\n2,What is 2?\n",
                                                                                  "suites/data/rows.csv")),
        ["rows.csv:3", "answer"]),
    Bad("csv-only-id", "data",
        _both(_replace(S, "data: {path: data/cases.jsonl}", CSV_SUITE), _data("id,question,answer\n1,What is 1?,1\n2\n",
                                                                                  "suites/data/rows.csv")),
        ["rows.csv:3", "question"]),
    Bad("csv-extra-field", "data",
        _both(_replace(S, "data: {path: data/cases.jsonl}", CSV_SUITE), _data("id,question,answer\n1,What is 1, really?,1\n",
                                                                                  "suites/data/rows.csv")),
        ["rows.csv:2", "fields"]),
    Bad("csv-duplicate-column", "data",
        _both(_replace(S, "data: {path: data/cases.jsonl}", CSV_SUITE), _data("id,question,question\n1,a,b\n",
                                                                                  "suites/data/rows.csv")),
        ["rows.csv:1", "question"]),
    Bad("csv-duplicate-id", "data",
        _both(_replace(S, "data: {path: data/cases.jsonl}", CSV_SUITE), _data("id,question,answer\n1,a,1\n2,b,2\n1,c,3\n",
                                                                                  "suites/data/rows.csv")),
        ["rows.csv:4", "id '1'"]),
    Bad("mapped-null-input", "data",
        _both(_mapped("{input: q, reference: a}"), _data('{"q": "hi", "a": "1"}\n{"q": null, "a": "2"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:2", "null"]),
    Bad("mapped-missing-field", "data",
        _both(_mapped("{input: q, reference: a}"), _data('{"q": "hi", "a": "1"}\n{"question": "x", "a": "2"}\n',
                                                         "suites/data/rows.jsonl")),
        ["rows.jsonl:2", "data.fields.input"]),
    Bad("mapped-row-not-object", "data",
        _both(_mapped("{input: q, reference: a}"), _data('{"q": "hi", "a": "1"}\n"just a string"\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:2", "not an object"]),
    Bad("fewshot-without-pool", "data", _both(_models_add("\n[variants.fs]\nfewshot = 3\n"), _replace(S, "[base, rec]", "[base, fs]")),
        ["s.yaml:2", "data.holdout", "few-shot"]),
    # ------------------------------------------------------------------ templates (sandboxed, bounded)
    Bad("template-huge-range", "template",
        _both(_mapped("{template: '{% for i in range(10**9) %}x{% endfor %}', reference: a}"),
              _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template", "range"]),
    Bad("template-nested-ranges", "template",
        _both(_mapped("{template: '{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}', reference: a}"),
              _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template", "budget"]),
    Bad("template-string-bomb", "template",
        _both(_mapped("{template: \"{{ 'a' * 10**9 }}\", reference: a}"), _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template", "too large"]),
    Bad("template-power-bomb", "template",
        _both(_mapped("{template: '{{ 10**10**10**10 }}', reference: a}"), _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template", "too large"]),
    Bad("template-undefined", "template",
        _both(_mapped("{template: \"Q:\\n{{ question }}\", reference: a}"), _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template", "template line 2", "question"]),
    Bad("template-sandbox-escape", "template",
        _both(_mapped("{template: '{{ q.__class__.__mro__ }}', reference: a}"), _data('{"q": "hi", "a": "1"}\n', "suites/data/rows.jsonl")),
        ["rows.jsonl:1", "data.fields.template"]),
    # ------------------------------------------------------------------ recorded outputs
    Bad("outputs-array-line", "outputs", _data('["q0", "0"]\n', OUT), ["outputs.jsonl:1", "array"]),
    Bad("outputs-invalid-json", "outputs", _data('{"case_id": "q0", "output": "0"}\n{"case_id": "q1", \n', OUT), ["outputs.jsonl:2"]),
    Bad("outputs-duplicate-id", "outputs",
        _data('{"case_id": "q0", "output": "0"}\n{"case_id": "q1", "output": "2"}\n{"case_id": "q0", "output": "1"}\n', OUT),
        ["outputs.jsonl:3", "'q0'", "lines 1 and 3"]),
    Bad("outputs-unknown-id", "outputs", _data('{"case_id": "q0", "output": "0"}\n{"case_id": "zz9", "output": "2"}\n', OUT),
        ["outputs.jsonl:2", "'zz9'", "allow_extra"]),
    Bad("outputs-unknown-prompt", "outputs", _data('{"prompt": "What is 7 + 7?", "output": "14"}\n', OUT),
        ["outputs.jsonl:1", "What is 7 + 7?"]),
    Bad("outputs-no-output", "outputs", _data('{"case_id": "q0", "text": "0"}\n', OUT), ["outputs.jsonl:1", "output"]),
    Bad("outputs-no-id", "outputs", _data('{"output": "0"}\n', OUT), ["outputs.jsonl:1", "case_id"]),
    Bad("outputs-duplicate-prompt", "outputs",
        _data('{"prompt": "What is 1 + 1?", "output": "2"}\n{"prompt": "What is 1 + 1?", "output": "3"}\n', OUT),
        ["outputs.jsonl:2", "lines 1 and 2"]),
    Bad("outputs-not-utf8", "encoding", _data(b'{"case_id": "q0", "output": "caf\xe9"}\n', OUT), ["outputs.jsonl:1", "UTF-8"]),
    # ------------------------------------------------------------------ JSON schemas
    Bad("schema-not-json", "schema", _data('{"type": "object",\n', "suites/schemas/s.json"), ["s.json", "line 2", "s.yaml:6"]),
    Bad("schema-invalid", "schema", _data('{"type": "objekt"}', "suites/schemas/s.json"), ["s.json", "s.yaml:6", "JSON Schema"]),
    Bad("schema-not-found", "schema", _replace(S, "schemas/s.json", "schemas/none.json"), ["none.json", "s.yaml:6"]),
    Bad("schema-dangling-ref", "schema", _data('{"$ref": "#/$defs/nope"}', "suites/schemas/s.json"), ["s.json", "s.yaml:6", "$ref"]),
    # ------------------------------------------------------------------ the generation cache
    Bad("cache-garbage", "cache", _cache(b"this is not a database at all, just text\n" * 10), ["gen.sqlite", "not an SQLite"]),
    Bad("cache-truncated-sqlite", "cache", _cache(b"SQLite format 3\x00" + b"\x00" * 40), ["gen.sqlite", "cache"]),
    Bad("cache-other-sqlite", "cache", _cache(sqlite_other=True), ["gen.sqlite", "generations"]),
    Bad("cache-is-directory", "cache", _cache(directory=True), ["gen.sqlite", "directory"]),
    # ------------------------------------------------------------------ found by a new user's review
    Bad("yaml-key-twice", "suite", lambda r: edit(r, "suites/s.yaml", "gates:\n", "gates:\n  - base.format >= 0.0\ngates:\n"),
        ["s.yaml:10", "'gates'", "lines 8 and 10"]),
    Bad("suite-name-twice", "suite", lambda r: put(r, "suites/t.yaml", (r / "suites" / "s.yaml").read_text()),
        ["t.yaml:1", "s.yaml", "'s'"]),
    Bad("variants-blank", "cli", lambda r: None, ["--variants"], extra_args=["--variants", " , "]),
    Bad("outputs-by-id-and-prompt", "outputs",
        lambda r: (r / "outputs.jsonl").write_text((r / "outputs.jsonl").read_text()
                                                   + json.dumps({"prompt": "What is 0 + 0?", "output": "1"}) + "\n"),
        ["outputs.jsonl:5", "'q0'", "line 1"]),
]


def test_catalogue_size():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_unbroken_project_runs(bad_project):
    """The catalogue breaks a project that works: the same command on it writes a run and a cache."""
    bad = Bad("none", "none", lambda root: None, [])
    result = CliRunner().invoke(app, cli_args(bad_project, bad))
    assert result.exit_code in (0, 1), result.output
    assert (bad_project / "reports" / "runs").is_dir() and (bad_project / "cache" / "gen.sqlite").is_file()
    assert "4 of 4 without recorded output" not in result.output and "0 of 4 without recorded output" in result.output


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(bad, bad_project):
    bad.mutate(bad_project)
    before = snapshot(bad_project)
    result = CliRunner().invoke(app, cli_args(bad_project, bad))
    output = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}: {output!r} {result.exception!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert output.count("error:") == 1, output  # printed once
    for name in bad.names:
        assert name in output, f"{name!r} not in {output!r}"
    assert not (bad_project / "reports").exists(), "a run directory was created"
    assert snapshot(bad_project) == before, "a file was written or changed"

"""Bad scorer options fail when the suite loads, naming the suite file, the key path and its line."""

from __future__ import annotations

import pytest

from harness.config.suite import load_suite
from harness.errors import ConfigError

BAD = [
    # (scorers YAML, expected key path, text in the message)
    ("format:\n  json_schema: {schema: missing.json}", "scorers.format.json_schema.schema", "file not found"),
    ("format:\n  json_schema: missing.json", "scorers.format.json_schema", "file not found"),
    ("format:\n  json_schema: {schema: bad_schema.json}", "scorers.format.json_schema.schema",
     "not a valid JSON Schema"),
    ("format:\n  json_schema: {schema: ok_schema.json, strictt: true}", "scorers.format.json_schema.strictt",
     "Did you mean 'strict'"),
    ("format:\n  regex: {must_match: ['(unclosed']}", "scorers.format.regex.must_match", "does not compile"),
    ("format:\n  regex: {must_match: [ok], flags: q}", "scorers.format.regex.flags", "unknown flag"),
    ("format:\n  required_phrases: {phrases: []}", "scorers.format.required_phrases.phrases", "non-empty"),
    ("format:\n  forbidden_phrases: {phrases: [x], ignore_case: maybe}",
     "scorers.format.forbidden_phrases.ignore_case", "must be bool"),
    ("format:\n  max_words: {limit: -3}", "scorers.format.max_words.limit", "0 or more"),
    ("format:\n  max_chars: {limt: 3}", "scorers.format.max_chars.limt", "Did you mean 'limit'"),
    ("format:\n  starts_with: {text: ''}", "scorers.format.starts_with.text", "non-empty"),
    ("format:\n  instructions: {mode: lenient}", "scorers.format.instructions.mode", "'strict' or 'loose'"),
    ("accuracy:\n  token_f1: {ignore_case: true}", "scorers.accuracy.token_f1.ignore_case", "unknown option"),
    ("accuracy:\n  numeric: {tolerance: -0.1}", "scorers.accuracy.numeric.tolerance", ">= 0"),
    ("accuracy:\n  json_fields: {mode: fraction}", "scorers.accuracy.json_fields.mode", "json_fields_fraction"),
    ("accuracy:\n  json_fields: {fields: name}", "scorers.accuracy.json_fields.fields", "must be list"),
    ("accuracy:\n  choice_letter: {num_choices: 1}", "scorers.accuracy.choice_letter.num_choices", "between 2"),
    ("hallucination:\n  unsupported_values: {source: users}", "scorers.hallucination.unsupported_values.source",
     "'user', 'context' or 'all'"),
    ("hallucination:\n  truthfulqa_mc: {true_fields: x}", "scorers.hallucination.truthfulqa_mc.true_fields",
     "Did you mean 'true_field'"),
    ("hallucination:\n  abstention: {phrases: []}", "scorers.hallucination.abstention.phrases", "at least one"),
    # list form of the scorers block
    ("format:\n  - json\n  - regex: {must_not_match: ['[']}", "scorers.format.1.regex.must_not_match",
     "does not compile"),
]


@pytest.mark.parametrize("scorers, key, message", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_bad_option_fails_at_load_with_file_key_and_line(suite_with, scorers, key, message):
    suite_dir = suite_with("accuracy: exact_match").parent
    (suite_dir / "bad_schema.json").write_text('{"type": 12}')
    (suite_dir / "ok_schema.json").write_text('{"type": "object"}')
    path = suite_with(scorers, name="bad.yaml")
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    error = exc.value
    assert error.file == str(path)
    assert error.key == key, str(error)
    assert message in str(error), str(error)
    assert error.line is not None and error.line >= 5, str(error)
    assert str(path) in str(error) and f"key '{key}'" in str(error)


GOOD = """
format:
  json: {}
  json_schema: ok_schema.json
  regex: {must_match: ['\\d+'], must_not_match: [sorry], flags: im}
  required_phrases: [refund]
  forbidden_phrases: {phrases: [as an AI], ignore_case: true}
  max_words: 200
  max_chars: {limit: 2000}
  starts_with: "{"
  ends_with: {text: "}", strip: true}
  instructions: {mode: loose}
accuracy:
  token_f1:
  numeric: {tolerance: 0.01, relative_tolerance: 0.001}
  json_fields: [name, email, amount]
  json_fields_fraction: {fields: [name]}
  choice_letter: {}
hallucination:
  unsupported_values: user
  abstention: {extra_phrases: [no idea]}
"""


def test_every_scorer_loads_with_valid_options(suite_with):
    suite_dir = suite_with("accuracy: exact_match").parent
    (suite_dir / "ok_schema.json").write_text('{"type": "object"}')
    suite = load_suite(suite_with(GOOD, name="good.yaml"))
    names = [(s.axis, s.name) for s in suite.scorers]
    assert len(names) == 17
    assert suite.axis_binary("format") and suite.axis_binary("hallucination")
    assert not suite.axis_binary("accuracy")  # token_f1 and json_fields_fraction are continuous
    assert suite.axis_direction("hallucination") == "lower"

"""The one JSON extraction rule (harness.scorers.format.extract_json), issue 19 finding 5.

Non-strict extraction takes the whole output, a fenced block, or the first complete top-level
object in prose; never a fragment nested inside a broken (e.g. truncated) object, never an array
found in prose. Strict takes only the whole output. Hypothesis checks it on generated JSON.
"""

from __future__ import annotations

import json
import textwrap

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scorer_helpers import build, make_case, out, run

from harness.config.suite import load_suite
from harness.scorers.format import extract_json

# --------------------------------------------------------------------------- the exact cases of the issue


def test_truncated_object_is_not_json():
    value, error = extract_json('{"a": 1, "b": []')
    assert value is None and error
    assert run("json", '{"a": 1, "b": []').value == 0.0


def test_apology_with_a_citation_is_not_json():
    assert extract_json("Sorry, I cannot help [1].")[1] is not None
    assert run("json", "Sorry, I cannot help [1].").value == 0.0


def test_truncated_object_fails_schema_and_fields(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text('{"type": ["object", "array"]}')
    assert build("json_schema", {"schema": str(schema)})(make_case(), out('{"a": 1, "b": []')).value == 0.0
    fields = build("json_fields", ["a"])
    case = make_case(reference='{"a": 1}')
    assert fields(case, out('{"a": 1, "b": {"a": 1}')).value == 0.0  # the nested {"a": 1} is not the answer
    assert fields(case, out('{"a": 1}')).value == 1.0


def test_arrays_count_whole_or_fenced_only():
    assert extract_json("[1, 2]") == ([1, 2], None)
    assert extract_json("Here:\n```json\n[1, 2]\n```") == ([1, 2], None)
    assert extract_json("The list is [1, 2].")[0] is None


def test_later_top_level_object_after_a_balanced_non_json_span():
    assert extract_json('Note {not json} then {"b": 1}') == ({"b": 1}, None)
    assert extract_json('Result: {"a": 1, "b": [} then {"b": 1}')[0] is None  # mismatched bracket ends the search


def test_brackets_inside_strings_do_not_count():
    assert extract_json('ok {"a": "}{]["} bye') == ({"a": "}{]["}, None)


def test_broken_fence_does_not_fall_back_to_a_nested_fragment():
    assert extract_json('```json\n{"a": 1, "b": [2]\n```')[0] is None


def test_from_fence_false_treats_fences_as_prose():
    assert extract_json("```json\n[1]\n```", from_fence=False)[0] is None
    assert extract_json('```json\n{"a": 1}\n```', from_fence=False) == ({"a": 1}, None)


# --------------------------------------------------------------------------- strict default for the suite


def _suite(tmp_path, extra: str):
    (tmp_path / "d.jsonl").write_text('{"input": "q", "reference": "{\\"a\\": 1}"}\n')
    (tmp_path / "s.json").write_text('{"type": "object"}')
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(f"""\
        suite: s
        data: {{path: d.jsonl}}
        variants: [base]
        {extra}
        scorers:
          format: [json, {{json_schema: s.json}}]
          accuracy: {{json_fields: [a]}}
        """))
    return load_suite(path)


def test_suite_json_strict_applies_to_all_three(tmp_path):
    chatty = out('Sure! {"a": 1}')
    lenient = _suite(tmp_path, "")
    strict = _suite(tmp_path, "json_strict: true")
    case = make_case(reference='{"a": 1}')
    assert [s.fn(case, chatty).value for s in lenient.scorers] == [1.0, 1.0, 1.0]
    assert [s.fn(case, chatty).value for s in strict.scorers] == [0.0, 0.0, 0.0]
    assert [s.fn(case, out('{"a": 1}')).value for s in strict.scorers] == [1.0, 1.0, 1.0]


def test_scorer_strict_option_overrides_the_suite_default(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"input": "q"}\n')
    path = tmp_path / "suite.yaml"
    path.write_text("suite: s\ndata: {path: d.jsonl}\nvariants: [base]\njson_strict: true\n"
                    "scorers:\n  format: {json: {strict: false}}\n")
    assert load_suite(path).scorers[0].fn(make_case(), out('Sure! {"a": 1}')).value == 1.0


def test_json_strict_must_be_boolean(tmp_path):
    from harness.errors import ConfigError

    (tmp_path / "d.jsonl").write_text('{"input": "q"}\n')
    path = tmp_path / "suite.yaml"
    path.write_text("suite: s\ndata: {path: d.jsonl}\nvariants: [base]\njson_strict: yes please\n"
                    "scorers:\n  format: json\n")
    try:
        load_suite(path)
    except ConfigError as exc:
        assert "json_strict" in str(exc) and "suite.yaml:4" in str(exc)
    else:
        raise AssertionError("json_strict: 'yes please' was accepted")


# --------------------------------------------------------------------------- property tests

_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                     max_leaves=12)
_objects = st.dictionaries(st.text(max_size=6), _json, min_size=1, max_size=4)
_containers = _objects | st.lists(_json, min_size=1, max_size=4)
_prose = st.text(alphabet=st.characters(blacklist_characters="{}[]`\"\\", blacklist_categories=("Cs",)), max_size=30)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_containers, st.data())
def test_no_proper_truncation_of_a_container_is_valid(value, data):
    """A truncated object or array never scores valid: whole, in prose, or in a fence."""
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    cut = data.draw(st.integers(1, len(text) - 1))
    truncated = text[:cut]
    assume(truncated.strip() != text.strip())
    prefix = data.draw(_prose)
    for candidate in (truncated, prefix + truncated, "```json\n" + truncated + "\n```", prefix + "```json\n" + truncated):
        value_out, error = extract_json(candidate)
        assert error is not None, (candidate, value_out)


@_SETTINGS
@given(_json)
def test_whole_output_round_trips_strict_and_not(value):
    text = json.dumps(value)
    assert extract_json(text) == (value, None)
    assert extract_json(text, strict=True) == (value, None)


@_SETTINGS
@given(_objects, _prose, _prose)
def test_object_in_prose_is_found_only_when_not_strict(value, before, after):
    text = before + " " + json.dumps(value) + " " + after
    assert extract_json(text) == (value, None)
    if before.strip() or after.strip():
        assert extract_json(text, strict=True)[0] is None


@_SETTINGS
@given(_containers, _prose, _prose)
def test_fenced_value_is_found(value, before, after):
    text = before + "\n```json\n" + json.dumps(value, indent=2) + "\n```\n" + after
    assert extract_json(text) == (value, None)


@_SETTINGS
@given(_objects, _containers, st.data())
def test_fragment_nested_in_a_truncated_object_is_never_taken(outer, inner, data):
    """A complete value nested inside an object that never closes is not the answer."""
    key = data.draw(st.text(max_size=5))
    text = json.dumps(outer)[:-1] + ", " + json.dumps(key) + ": " + json.dumps(inner)
    prefix = data.draw(_prose)
    assert extract_json(prefix + text)[1] is not None


@_SETTINGS
@given(st.lists(_leaf, min_size=1, max_size=4), _prose, _prose)
def test_arrays_in_prose_are_not_taken(items, before, after):
    assume(before.strip() or after.strip())
    text = before + " " + json.dumps(items) + " " + after
    assume(extract_json(text.strip(), strict=True)[1] is not None)
    assert extract_json(text)[1] is not None


_noise = st.sampled_from(["[1]", "(see [note])", "{name}", "[citation needed]", "{{x}}", "(a)", "[1, 2]", "{a: 1}"])


@_SETTINGS
@given(_objects, st.lists(_noise, max_size=3), _prose, _prose)
def test_balanced_non_json_brackets_before_the_object_are_skipped(value, noise, before, after):
    """Prose with its own balanced brackets (citations, placeholders, arrays) before the answer still finds it."""
    text = before + " " + " ".join(noise) + " " + json.dumps(value) + " " + after
    assert extract_json(text) == (value, None)


def test_details_say_where_the_json_was_found():
    """A report can count the answers that passed only because prose around the JSON was ignored."""
    assert run("json", '{"a": 1}').details["json_from"] == "whole"
    assert run("json", 'Here:\n```json\n{"a": 1}\n```').details["json_from"] == "fence"
    assert run("json", 'Sure! {"a": 1}').details["json_from"] == "prose"
    fields = build("json_fields", ["a"])(make_case(reference='{"a": 1}'), out('Sure! {"a": 1}'))
    assert fields.value == 1.0 and fields.details["json_from"] == "prose"

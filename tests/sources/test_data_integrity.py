"""Data files read exactly (issue 19, findings 6 and 7): CSV rows and lines, ids, templates, encodings, YAML lines."""

from __future__ import annotations

import pytest

from harness.config.files import load_yaml
from harness.errors import ConfigError, DataError
from harness.sources.native import FieldMap, load_cases

FIELDS = FieldMap(input="question", reference="answer", id="id")


def test_csv_row_with_missing_trailing_field_is_an_error_not_the_prompt_null(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,question,answer\n1,What is 1?,1\n2,What is 2?\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_cases(path, FIELDS)
    assert exc.value.line == 3 and exc.value.key == "answer" and "missing: answer" in str(exc.value)


def test_csv_line_numbers_count_quoted_multiline_values(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('id,question,answer\n1,"What is\none plus\none?",2\n2,short\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_cases(path, FIELDS)
    assert exc.value.line == 5


def test_csv_reads_values_exactly_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes("\ufeffid,question,answer\r\n1,\"a, b\",\r\n2,\"x\ny\",2\r\n".encode())
    cases = load_cases(path, FIELDS)
    assert [c.id for c in cases] == ["1", "2"]
    assert cases[0].last_user == "a, b" and cases[0].reference == ""
    assert cases[1].last_user == "x\ny"


def test_two_rows_with_one_id_are_an_error(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 7, "q": "a", "a": "1"}\n\n{"id": "7", "q": "b", "a": "2"}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_cases(path, FieldMap(input="q", reference="a", id="id"))
    assert exc.value.line == 3 and "lines 1 and 3" in str(exc.value)


def test_rows_without_id_keep_content_ids(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"q": "a", "a": "1"}\n{"q": "a", "a": "1"}\n', encoding="utf-8")
    first, second = load_cases(path, FieldMap(input="q", reference="a"))
    assert second.id == first.id + "-2"  # documented: identical id-less rows are numbered


@pytest.mark.parametrize("template, expected", [
    ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
    ("{{ '-' * 5 }}{{ 3 * 4 }}{{ 2 ** 10 }}", "-----121024"),
    ("{{ q | upper }}", "HI"),
])
def test_bounded_templates_still_render_normal_work(tmp_path, template, expected):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"q": "hi", "a": "1"}\n', encoding="utf-8")
    (case,) = load_cases(path, FieldMap(template=template, reference="a"))
    assert case.last_user == expected


def test_template_range_budget_is_per_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join('{"q": "hi", "a": "1"}\n' for _ in range(5)), encoding="utf-8")
    cases = load_cases(path, FieldMap(template="{% for i in range(6000) %}{% endfor %}{{ q }}", reference="a"))
    assert len(cases) == 5


def test_yaml_error_in_an_unclosed_bracket_points_at_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("suite: s\nvariants: [base, tuned\nscorers: {accuracy: exact_match}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert exc.value.line == 2 and "line 3" in str(exc.value) and "opened at line 2" in str(exc.value)


def test_yaml_error_without_an_open_construct_keeps_the_problem_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("suite: s\nvariants: [base]\n  oops: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert exc.value.line == 3


def test_non_utf8_files_name_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"suite: s\n# caf\xe9\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert exc.value.line == 2 and "UTF-8" in str(exc.value)


def test_a_damaged_cache_page_is_a_clear_error(tmp_path):
    """Damage the header check cannot see (a page in the middle) surfaces as an error naming the file."""
    from harness.engine.cache import GenerationCache

    path = tmp_path / "gen.sqlite"
    cache = GenerationCache(path)
    cache.put_many({str(i): "x" * 500 for i in range(2000)})
    cache._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(b"\xff" * 8192)
    with pytest.raises(ConfigError) as exc:
        GenerationCache(path).get_many([str(i) for i in range(2000)])
    assert str(path) in str(exc.value) and "Move the file aside" in str(exc.value)

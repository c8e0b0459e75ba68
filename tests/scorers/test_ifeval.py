"""Tests for harness.scorers.ifeval, the offline IFEval instruction checker.

The agreement tests replay IFEval's shipped GPT-4 responses through our checker
and compare with the verdicts of IFEval's reference checker
(``suites/data/external/ifeval_gpt4_verdicts_{strict,loose}.jsonl``).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from harness.scorers import ifeval
from harness.scorers.ifeval import (
    SUPPORTED,
    UNSUPPORTED_REASON,
    check_all,
    check_instruction,
)

EXTERNAL = Path(__file__).resolve().parents[2] / "suites" / "data" / "external"
MIN_AGREEMENT = 0.99


def _read_jsonl(name: str) -> list[dict]:
    path = EXTERNAL / name
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def ifeval_rows() -> list[dict]:
    """Input rows joined (on prompt) with the GPT-4 response and both reference verdicts."""
    inputs = _read_jsonl("ifeval_input_data.jsonl")
    responses = {r["prompt"]: r["response"] for r in _read_jsonl("ifeval_gpt4_responses.jsonl")}
    verdicts = {
        mode: {r["prompt"]: r["follow_instruction_list"] for r in _read_jsonl(f"ifeval_gpt4_verdicts_{mode}.jsonl")}
        for mode in ("strict", "loose")
    }
    rows = []
    for row in inputs:
        prompt = row["prompt"]
        assert prompt in responses, f"no response for key {row['key']}"
        for mode in ("strict", "loose"):
            assert prompt in verdicts[mode], f"no {mode} verdict for key {row['key']}"
            assert len(verdicts[mode][prompt]) == len(row["instruction_id_list"])
        rows.append(
            {
                **row,
                "response": responses[prompt],
                "strict": verdicts["strict"][prompt],
                "loose": verdicts["loose"][prompt],
            }
        )
    return rows


def test_every_reference_instruction_id_is_classified(ifeval_rows):
    ids = {iid for row in ifeval_rows for iid in row["instruction_id_list"]}
    unclassified = ids - SUPPORTED - set(UNSUPPORTED_REASON)
    assert not unclassified
    assert not SUPPORTED & set(UNSUPPORTED_REASON)


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_agreement_with_reference_verdicts(ifeval_rows, mode):
    total: collections.Counter[str] = collections.Counter()
    agree: collections.Counter[str] = collections.Counter()
    disagreements = []
    for row in ifeval_rows:
        ours = check_all(
            row["instruction_id_list"],
            row["kwargs"],
            row["prompt"],
            row["response"],
            loose=(mode == "loose"),
        )
        for iid, mine, ref in zip(row["instruction_id_list"], ours, row[mode], strict=True):
            if iid not in SUPPORTED:
                assert mine is None, (iid, row["key"])
                continue
            assert isinstance(mine, bool), (iid, row["key"], mine)
            total[iid] += 1
            if mine == ref:
                agree[iid] += 1
            else:
                disagreements.append(f"{iid} key={row['key']} ours={mine} reference={ref}")

    n = sum(total.values())
    rate = sum(agree.values()) / n
    per_id = "\n".join(f"  {iid}: {agree[iid]}/{total[iid]}" for iid in sorted(total))
    report = f"IFEval {mode}: {sum(agree.values())}/{n} supported instructions agree ({rate:.2%})\n{per_id}\n" + (
        "disagreements:\n  " + "\n  ".join(disagreements) if disagreements else ""
    )
    print(report)
    assert set(total) == SUPPORTED, "every supported id should occur in the reference data"
    assert n >= 700, report
    assert rate >= MIN_AGREEMENT, report


# --------------------------------------------------------------------------- #
# Hand-written cases: (instruction id, kwargs, response, strict verdict)
# --------------------------------------------------------------------------- #

END = "Is there anything else I can help with?"
CASES = [
    # keywords:existence -- case-insensitive search
    ("keywords:existence", {"keywords": ["alpha", "beta"]}, "Alpha and BETA.", True),
    ("keywords:existence", {"keywords": ["alpha", "beta"]}, "Only alpha here.", False),
    ("keywords:existence", {"keywords": ["café"]}, "Un CAFÉ, s'il vous plaît.", True),
    # keywords:frequency
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "Cat? cat!", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "One cat only.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "One cat only.", True),
    # keywords:forbidden_words -- whole words, case-insensitive
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "A badge-worthy effort.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "Not BAD at all.", False),
    # keywords:letter_frequency -- case-insensitive character count
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "Zigzag zoo", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "lazy", False),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 2, "let_relation": "less than"}, "lazy", True),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"}, "#one #two", True),
    # length_constraints:number_words -- \w+ tokens
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "Two words", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "One, two, three.", False),
    ("length_constraints:number_words", {"num_words": 4, "relation": "at least"}, "naïve café, déjà-vu!", True),
    # length_constraints:number_paragraphs -- *** dividers
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nFirst.\n***\nSecond.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\n***\nSecond.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "Just one.", False),
    # length_constraints:nth_paragraph_first_word -- \n\n paragraphs
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "However"},
        'Intro text.\n\n"However, more."',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
        "Intro text.\n\nBut no.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
        "Intro.\n\nHowever one.\n\nThree.",
        False,
    ),
    # punctuation:no_comma -- ASCII comma only
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Yes, one.", False),
    ("punctuation:no_comma", {}, "全角逗号，不算。", True),
    # change_case
    ("change_case:english_capital", {}, "THIS IS ALL IN CAPITAL LETTERS AND IT IS ENGLISH.", True),
    ("change_case:english_capital", {}, "THIS IS NOT all capitals.", False),
    (
        "change_case:english_capital",
        {},
        "CECI EST UNE PHRASE EN FRANÇAIS ET ELLE EST ASSEZ LONGUE POUR LE DIRE.",
        False,
    ),
    ("change_case:english_lowercase", {}, "this is all lowercase and it is english.", True),
    ("change_case:english_lowercase", {}, "this has One capital in it.", False),
    (
        "change_case:english_lowercase",
        {},
        "ceci est une phrase en français et elle est assez longue pour le dire.",
        False,
    ),
    ("change_case:english_lowercase", {}, "это не английский текст и он весь строчный.", False),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 4, "capital_relation": "at least"},
        "I LOVE NEW YORK",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 4, "capital_relation": "at least"},
        "I love New York",
        False,
    ),
    # NLTK's tokenizer splits DON'T into DO + N'T, so this is 3 upper-case tokens.
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": "at least"},
        "Well, I DON'T agree.",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "Only NASA is shouting here.",
        True,
    ),
    # detectable_format:json_format
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '{"ключ": "значение"}', True),
    ("detectable_format:json_format", {}, 'Here is the JSON: {"a": 1}', False),
    # detectable_format:number_bullet_lists -- exact count of * / - lines
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro:\n* one\n- two\nThat is all.", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "- a\n- b\n- c", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**Bold**\n* a\n* b", True),
    # detectable_format:number_highlighted_sections
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "See *one* and *two*.", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "See *one* only.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold** and *it*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "** **", False),
    # detectable_format:multiple_sections
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nfoo\nSection 2\nbar",
        True,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nfoo only",
        False,
    ),
    # detectable_format:title
    ("detectable_format:title", {}, "<<My Title>>\nbody", True),
    ("detectable_format:title", {}, "<<标题>>\n正文", True),
    ("detectable_format:title", {}, "<< >> no title", False),
    ("detectable_format:title", {}, "No title at all.", False),
    # detectable_format:constrained_response -- case-sensitive substring
    ("detectable_format:constrained_response", {}, "Having thought about it: My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "my answer is yes.", False),
    # detectable_content:number_placeholders
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], you live at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    # detectable_content:postscript
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nP.S. Hi!", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\np.s. hi", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body only.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.P.S. Bye", True),
    # startend:end_checker
    ("startend:end_checker", {"end_phrase": END}, f"Done. {END}", True),
    ("startend:end_checker", {"end_phrase": END}, f'"Done. {END.upper()}"', True),
    ("startend:end_checker", {"end_phrase": END}, f"{END} Thanks!", False),
    # startend:quotation
    ("startend:quotation", {}, '"Hello, world."', True),
    ("startend:quotation", {}, '  "“Nested” quotes"  ', True),
    ("startend:quotation", {}, '"', False),
    ("startend:quotation", {}, "Hello", False),
    # combination:repeat_prompt -- case-insensitive prefix
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    # combination:two_responses
    ("combination:two_responses", {}, "Answer A\n******\nAnswer B", True),
    ("combination:two_responses", {}, "Same\n******\nSame", False),
    ("combination:two_responses", {}, "A\n******\n******\nB", False),
    ("combination:two_responses", {}, "Only one answer.", False),
]


@pytest.mark.parametrize(("iid", "kwargs", "response", "expected"), CASES)
def test_hand_written_cases(iid, kwargs, response, expected):
    assert check_instruction(iid, kwargs, "prompt", response) is expected


def test_hand_written_cases_cover_every_supported_id():
    assert {case[0] for case in CASES} == SUPPORTED


def _kwargs_for(iid: str) -> dict:
    return next(case[1] for case in CASES if case[0] == iid)


@pytest.mark.parametrize("iid", sorted(SUPPORTED))
@pytest.mark.parametrize("response", ["", "   \n\t  "])
@pytest.mark.parametrize("loose", [False, True])
def test_empty_response_never_follows(iid, response, loose):
    # Even "less than N" instructions fail on an empty response, as in the reference.
    assert check_instruction(iid, _kwargs_for(iid), "prompt", response, loose=loose) is False


@pytest.mark.parametrize(
    ("iid", "kwargs", "response"),
    [
        # Preamble line before the quoted answer: only removing the first line helps.
        ("startend:quotation", {}, 'Sure, here it is:\n"Hello there"'),
        # Markdown bold around the end phrase: only deleting asterisks helps.
        ("startend:end_checker", {"end_phrase": END}, f"Done.\n**{END}**"),
        # A trailing sign-off line with a comma.
        ("punctuation:no_comma", {}, "No commas in the answer\nCheers, bot"),
        (
            "combination:repeat_prompt",
            {"prompt_to_repeat": "Write a poem."},
            "Here is the request repeated:\nWrite a poem. Roses are red.",
        ),
    ],
)
def test_loose_mode_rescues_surrounding_prose(iid, kwargs, response):
    assert check_instruction(iid, kwargs, "prompt", response) is False
    assert check_instruction(iid, kwargs, "prompt", response, loose=True) is True


def test_loose_never_stricter_than_strict(ifeval_rows):
    for row in ifeval_rows:
        args = (row["instruction_id_list"], row["kwargs"], row["prompt"], row["response"])
        for strict, loose in zip(check_all(*args), check_all(*args, loose=True), strict=True):
            assert strict is None or not strict or loose


def test_unknown_and_unsupported_ids_return_none():
    assert check_instruction("no:such_instruction", {}, "p", "response") is None
    for iid in UNSUPPORTED_REASON:
        assert check_instruction(iid, {"language": "en"}, "p", "response", loose=True) is None
        assert UNSUPPORTED_REASON[iid]
    assert "language:response_language" in UNSUPPORTED_REASON
    assert "length_constraints:number_sentences" in UNSUPPORTED_REASON


def test_check_all_mixes_verdicts_and_none():
    verdicts = check_all(
        ["punctuation:no_comma", "language:response_language", "startend:quotation"],
        [{}, {"language": "fr"}, {}],
        "prompt",
        "No commas here",
    )
    assert verdicts == [True, None, False]
    with pytest.raises(ValueError):
        check_all(["punctuation:no_comma"], [], "prompt", "x")


def test_null_kwargs_are_ignored_like_the_hugging_face_rows():
    hf_style = {
        "num_highlights": None,
        "relation": "at least",
        "num_words": 2,
        "keywords": None,
        "prompt_to_repeat": None,
    }
    assert check_instruction("length_constraints:number_words", hf_style, "p", "two words")
    assert check_instruction("punctuation:no_comma", None, "p", "fine") is True
    assert check_instruction("punctuation:no_comma", {"language": None}, "p", "fine") is True


@pytest.mark.parametrize(
    ("iid", "kwargs"),
    [
        ("length_constraints:number_words", {"num_words": 5, "relation": "at most"}),
        ("length_constraints:number_words", {"relation": "at least"}),
        ("length_constraints:number_words", {"num_words": -1, "relation": "at least"}),
        ("length_constraints:number_words", {"num_words": "5", "relation": "at least"}),
        ("punctuation:no_comma", {"num_words": 5}),
        ("keywords:existence", {"keywords": []}),
        ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": "at least"}),
        ("combination:repeat_prompt", {"prompt_to_repeat": ""}),
        ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "x"}),
    ],
)
def test_malformed_kwargs_raise(iid, kwargs):
    with pytest.raises(ValueError):
        check_instruction(iid, kwargs, "prompt", "some response")


def test_invalid_regex_keyword_is_matched_literally():
    # Keywords are regular expressions in the reference; "[note" is not a valid one.
    kwargs = {"keywords": ["[note"]}
    assert check_instruction("keywords:existence", kwargs, "p", "See [NOTE 1].") is True
    assert check_instruction("keywords:existence", kwargs, "p", "See note 1.") is False


def test_word_tokenizer_matches_nltk_conventions():
    tokens = ifeval._word_tokenize("I DON'T KNOW. \"YOU'RE RIGHT,\" she said (cannot be).")
    assert tokens == [
        "I",
        "DO",
        "N'T",
        "KNOW",
        ".",
        "``",
        "YOU",
        "'RE",
        "RIGHT",
        ",",
        "''",
        "she",
        "said",
        "(",
        "can",
        "not",
        "be",
        ")",
        ".",
    ]

"""Fuzzing the query language: any input gives a result or a QueryError, never anything else
(and never runs code); generated queries agree with a row-by-row reference evaluation."""

from __future__ import annotations

import inspect
import math
import re
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxpy.reading.query import MAX_DEPTH, MAX_NUMBER_LENGTH, QueryError, evaluate, parse

FRAME = pd.DataFrame(
    {
        "config.lr": [0.1, 0.01, 0.001, None],
        "config.seed": pd.array([1, 2, 3, None], dtype="Int64"),
        "config.name": ["a", "b", "a", None],
        "config.tags": [["a", "b"], ["c"], [], None],  # list values, as the index keeps them
        "config.ids": [[1, 2], [True], [1.0], None],
        "config.mixed": [1, "1", 2.5, None],
        "config.my-key": [1, 2, 3, 4],
        "info.status": ["COMPLETE", "FAILED", "COMPLETE", "RUNNING"],
    },
    index=[1, 2, 3, 4],
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_query(text: str):
    try:
        tree = parse(text)
        mask = evaluate(tree, FRAME, text)
    except QueryError as exc:
        assert 0 <= exc.position <= len(text)
        *_, shown, caret = str(exc).split("\n")  # the query, one character per character
        assert len(shown) == 2 + len(text) and caret == "  " + " " * exc.position + "^"
        return None
    assert mask.dtype == bool and len(mask) == len(FRAME)
    return mask


@SETTINGS
@given(st.text(max_size=60))
def test_any_text_is_a_result_or_a_query_error(text):
    run_query(text)


TOKENS = [
    "config.lr",
    "config.seed",
    "config.name",
    "info.status",
    "nope.key",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "contains",
    "not",
    "and",
    "or",
    "&",
    "|",
    "~",
    "(",
    ")",
    "[",
    "]",
    ",",
    "1",
    "2.5",
    "1e-2",
    "-3",
    "'a'",
    '"COMPLETE"',
    "true",
    "None",
    "__import__",
    ".",
    "'",
    "os.system",
    ";",
    "config.mixed",
    "config.my-key",
    '"unterminated',
    "\x00",
    "\t\n",
]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_token_soup_is_a_result_or_a_query_error(tokens):
    run_query(" ".join(tokens))


def repeated(*pieces: str) -> st.SearchStrategy[str]:
    """One of ``pieces`` repeated up to 500 times: deeper than any limit allows."""
    return st.tuples(st.sampled_from(pieces), st.integers(0, 500)).map(lambda t: t[0] * t[1])


HOSTILE = st.one_of(
    repeated("(", ")", "not ", "~", "not (", "~(", "["),  # deep nesting
    st.tuples(st.sampled_from(["", "-", "0.", "1e", "1e-", "1."]), st.integers(1, 6000)).map(
        lambda t: t[0] + "7" * t[1]  # long digit strings, past Python's 4300-digit int limit
    ),
    st.sampled_from(["²", "١", "１", "1e999999", "-1e999999", "1e-999999"]),
    st.sampled_from(  # 'in' and lists in every place
        [
            "config.name in config.tags",
            "config.name not in config.seed",
            "'a' in config.tags",
            "in config.lr",
            "config.tags",
            "config.ids",
            "in []",
            "not in",
            "[1] ==",
            "== [1]",
            "[[",
            "config.tags contains 'a'",
            "config.tags not contains config.name",
            "contains",
            "'a' contains config.tags",
            "config.lr contains 1",
            "config.tags contains [1]",
        ]
    ),
)


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(TOKENS), HOSTILE), max_size=10))
def test_hostile_soup_is_a_result_or_a_query_error(parts):
    run_query(" ".join(parts))


# -- generated valid queries against a reference --------------------------------------
KEYS = {
    "config.lr": [0.1, 0.01, 0.5],
    "config.seed": [1, 2, 3],
    "config.name": ["a", "b"],
    "info.status": ["COMPLETE", "FAILED"],
}


def literal(value):
    return repr(value) if isinstance(value, str) else str(value)


@st.composite
def comparisons(draw):
    key = draw(st.sampled_from(sorted(KEYS)))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]))
    if op in ("in", "not in") and key == "config.name" and draw(st.booleans()):
        if draw(st.booleans()):  # ``tags contains x`` is ``x in tags``
            how = "contains" if op == "in" else "not contains"
            return f"config.tags {how} {key}", ("in-key", key, op, "config.tags")
        return f"{key} {op} config.tags", ("in-key", key, op, "config.tags")
    if op in ("in", "not in"):
        values = draw(st.lists(st.sampled_from(KEYS[key]), min_size=1, max_size=3))
        text = f"{key} {op} [{', '.join(literal(v) for v in values)}]"
        return text, ("in", key, op, tuple(values))
    if key in ("config.name", "info.status") and op not in ("==", "!="):
        op = "=="
    value = draw(st.sampled_from(KEYS[key]))
    return f"{key} {op} {literal(value)}", ("cmp", key, op, value)


queries = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, inner, st.sampled_from(["&", "|", "and", "or"])).map(
            lambda t: (
                f"({t[0][0]}) {t[2]} ({t[1][0]})",
                ("and" if t[2] in ("&", "and") else "or", t[0][1], t[1][1]),
            )
        ),
        inner.map(lambda q: (f"~({q[0]})", ("not", q[1]))),
    ),
    max_leaves=6,
)


def reference(node, row) -> bool:
    kind = node[0]
    if kind == "and":
        return reference(node[1], row) and reference(node[2], row)
    if kind == "or":
        return reference(node[1], row) or reference(node[2], row)
    if kind == "not":
        return not reference(node[1], row)
    _, key, op, value = node
    actual = row[key]
    if actual is None or actual is pd.NA or (isinstance(actual, float) and actual != actual):
        return op in ("!=", "not in")
    if kind == "in":
        return (actual in value) == (op == "in")
    if kind == "in-key":
        cell = row[value]
        return (isinstance(cell, list) and actual in cell) == (op == "in")
    return {
        "==": actual == value,
        "!=": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }[op]


@SETTINGS
@given(queries)
def test_generated_queries_match_the_reference(query):
    text, tree = query
    mask = run_query(text)
    assert mask is not None, text
    expected = [reference(tree, FRAME.loc[i].to_dict()) for i in FRAME.index]
    assert mask.tolist() == expected, text


# -- hostile inputs: each fails at the offending token, or gives the right rows -----------
def query_error(text: str) -> QueryError:
    """The QueryError ``text`` raises, from parsing or evaluating it."""
    try:
        evaluate(parse(text), FRAME, text)
    except QueryError as exc:
        return exc
    raise AssertionError(f"no QueryError for {text!r}")


SEED_IS_1 = [True, False, False, False]


@pytest.mark.parametrize(
    "prefix, suffix, negated",
    [
        ("(" * MAX_DEPTH, ")" * MAX_DEPTH, False),
        ("not " * MAX_DEPTH, "", False),
        ("~" * (MAX_DEPTH - 1), "", True),
        ("not (" * (MAX_DEPTH // 2), ")" * (MAX_DEPTH // 2), False),
    ],
)
def test_nesting_up_to_the_limit_works(prefix, suffix, negated):
    mask = run_query(prefix + "config.seed == 1" + suffix)
    assert mask.tolist() == ([not v for v in SEED_IS_1] if negated else SEED_IS_1)


@pytest.mark.parametrize("opener", ["(", "not ", "~", "not ("])
@pytest.mark.parametrize("extra", [1, 300, 5000])
def test_nesting_past_the_limit_is_a_query_error_at_the_token(opener, extra):
    text = opener * (MAX_DEPTH + extra) + "config.seed == 1"
    err = query_error(text)
    # the first token past the limit: the 101st '(' / 'not' / '~' ('not (' counts two)
    starts = [m.start() for m in re.finditer(r"\(|not|~", text)]
    assert err.position == starts[MAX_DEPTH]
    assert f"nests deeper than {MAX_DEPTH} levels" in str(err)


def test_nesting_at_the_limit_stays_far_from_the_recursion_limit():
    """The parser and evaluator recurse per level: at the limit they need < 400 frames."""
    text = "(not " * (MAX_DEPTH // 2) + "config.seed == 1" + ")" * (MAX_DEPTH // 2)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 400)
    try:
        mask = evaluate(parse(text), FRAME, text)
    finally:
        sys.setrecursionlimit(old)
    assert mask.tolist() == SEED_IS_1  # an even number of 'not'


def test_long_flat_chains_are_not_nesting():
    text = " & ".join(["config.seed == 1"] * 3000) + " | " + " or ".join(["config.lr > 1"] * 3000)
    assert run_query(text).tolist() == SEED_IS_1


@pytest.mark.parametrize("digits", [MAX_NUMBER_LENGTH + 1, 4301, 5000, 100_000])
@pytest.mark.parametrize("template", ["config.seed == {}", "config.lr < {}.5", "config.lr < 1e{}"])
def test_a_number_longer_than_the_limit_is_a_query_error_at_the_number(template, digits):
    text = template.format("1" * digits)
    err = query_error(text)
    assert err.position == text.index("1")
    assert f"a number has at most {MAX_NUMBER_LENGTH} characters" in str(err)


def test_a_number_at_the_limit_works():
    assert run_query("config.seed == " + "0" * (MAX_NUMBER_LENGTH - 1) + "1").tolist() == SEED_IS_1
    tiny = "0." + "0" * (MAX_NUMBER_LENGTH - 3) + "1"  # 1e-98, exactly MAX_NUMBER_LENGTH long
    assert run_query(f"config.lr > {tiny}").tolist() == [True, True, True, False]


@pytest.mark.parametrize(
    "number, value", [("1e999999", math.inf), ("-1e999999", -math.inf), ("1e-999999", 0.0)]
)
def test_floats_beyond_the_float_range_are_infinite_or_zero(number, value):
    assert parse(f"config.lr < {number}").right.value == value
    expected = [lr < value for lr in (0.1, 0.01, 0.001)] + [False]  # a missing lr: unordered
    assert run_query(f"config.lr < {number}").tolist() == expected


@pytest.mark.parametrize("digit", ["²", "١", "１", "٣"])
def test_non_ascii_digits_are_a_query_error(digit):
    for text in (f"config.seed == {digit}", f"config.seed == 1{digit}"):
        err = query_error(text)
        assert err.position == text.index(digit)
        assert f"unexpected character {digit!r}; numbers are written with the digits 0-9" in str(
            err
        )


def test_an_ascii_digit_running_into_a_name_gets_no_digit_hint():
    err = query_error("config.seed == 1_000")
    assert err.position == 15 and str(err).startswith("unexpected character '1'\n")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config.name in config.tags", [True, False, False, False]),
        ("config.name not in config.tags", [False, True, True, True]),
        ("'c' in config.tags", [False, True, False, False]),
        ("'c' not in config.tags", [True, False, True, True]),
        ("1 in config.ids", [True, False, True, False]),  # 1 == 1.0, but a bool is no number
        ("true in config.ids", [False, True, False, False]),
        ("config.seed in []", [False, False, False, False]),
        ("config.seed not in []", [True, True, True, True]),
        ("config.name in [none]", [False, False, False, True]),
    ],
)
def test_in_takes_a_list_or_a_key_whose_values_are_lists(text, expected):
    assert run_query(text).tolist() == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config.tags contains 'a'", [True, False, False, False]),
        ('config.tags contains "c"', [False, True, False, False]),
        ("config.tags not contains 'c'", [True, False, True, True]),
        ("not config.tags contains 'c'", [True, False, True, True]),
        ("config.tags contains config.name", [True, False, False, False]),
        ("config.ids contains 1", [True, False, True, False]),
        ("config.ids contains true", [False, True, False, False]),
        ("config.tags contains 'a' | config.tags contains 'c'", [True, True, False, False]),
        ("config.tags CONTAINS 'a'", [True, False, False, False]),  # keywords: any case
    ],
)
def test_contains_is_in_the_other_way_round(text, expected):
    assert run_query(text).tolist() == expected


@pytest.mark.parametrize(
    "text, token, message",
    [
        ("'a' contains config.tags", "'a'", "'contains' needs a key on its left"),
        ("config.tags contains ['a']", "[", "'contains' takes one value, not a list"),
        ("config.lr contains 1", "config.lr", "no run has a list under 'config.lr'"),
        ("config.tags contains", "", "expected a key, a number, a string or a list"),
        ("nope.tags contains 'a'", "nope.tags", "no run has the key 'nope.tags'"),
    ],
)
def test_contains_with_anything_else_is_a_query_error_there(text, token, message):
    err = query_error(text)
    assert err.position == (text.index(token) if token else len(text))
    assert message in str(err)


@pytest.mark.parametrize(
    "text, token, message",
    [
        ("config.name in config.seed", "config.seed", "'in' takes a list such as [1, 2], or a key"),
        ("config.name not in config.lr", "config.lr", "no run has a list under 'config.lr'"),
        ("'a' in config.name", "config.name", "'in' takes a list such as [1, 2], or a key"),
        ("config.seed in 1", "1", "'in' takes a list such as [1, 2], or a key whose values are"),
        ("config.seed not in 'a'", "'a'", "'not in' takes a list such as [1, 2]"),
        ("config.seed in none", "none", "'in' takes a list such as [1, 2]"),
        ("config.seed == [1]", "[", "a list can only follow 'in' or 'not in'"),
        ("[1] == config.seed", "[", "a list can only follow 'in' or 'not in'"),
        ("['a'] in config.tags", "[", "a list can only follow 'in' or 'not in'"),
        ("config.name in nope.tags", "nope.tags", "no run has the key 'nope.tags'"),
    ],
)
def test_in_with_anything_else_on_the_right_is_a_query_error_there(text, token, message):
    err = query_error(text)
    assert err.position == text.index(token)
    assert message in str(err)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config.lr < config.seed", [True, True, True, False]),  # both missing: never ordered
        ("config.lr >= config.seed", [False, False, False, False]),
        ("config.lr == config.seed", [False, False, False, True]),  # ... but equal, like == none
        ("config.lr != config.seed", [True, True, True, False]),
        ("config.mixed > 1", [False, False, True, False]),  # 1, '1', 2.5, missing
        ("config.mixed == 1", [True, False, False, False]),
        ("config.mixed == '1'", [False, True, False, False]),
        ("config.mixed < 'a'", [False, True, False, False]),
        ("config.mixed != 'x'", [True, True, True, True]),
        ("config.my-key == 2", [False, True, False, False]),  # '-' is part of a name
        ("config.my-key>=3 & config.my-key<=-1", [False, False, False, False]),
        ("config.name == 'a\x00'", [False, False, False, False]),  # a NUL inside a string
        ("config.name == 'a\\\nb' | config.name == \"b\"", [False, True, False, False]),
    ],
)
def test_awkward_but_valid_queries_give_the_right_rows(text, expected):
    assert run_query(text).tolist() == expected


def test_an_escape_may_be_any_character_even_a_newline():
    assert parse("config.name == 'a\\\nb\\''").right.value == "a\nb'"


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("config.name == 'abc", 15, 'unterminated string: no closing "\'"'),
        ('config.name == "a\\"', 15, "unterminated string: no closing '\"'"),
        ("'", 0, "unterminated string"),
        ("==", 0, "expected a key, a number, a string or a list, found '=='"),
        ("&", 0, "expected a key, a number, a string or a list, found '&'"),
        (")", 0, "expected a key, a number, a string or a list, found ')'"),
        ("~", 1, "expected a key, a number, a string or a list, found the end of the query"),
        ("not in", 4, "expected a key, a number, a string or a list, found 'in'"),
        ("config.seed in", 14, "expected a key, a number"),
        ("config.seed in [", 16, "expected a number, a string, true, false or none, found the end"),
        ("config.seed in [1,", 18, "expected a number, a string"),
        ("config.seed == 1\x00", 16, "unexpected character '\\x00'"),
        ("\x00config.seed", 0, "unexpected character '\\x00'"),
        ("config.my - key == 1", 10, "unexpected character '-'"),
    ],
)
def test_broken_queries_fail_at_the_token(text, position, message):
    err = query_error(text)
    assert (err.position, str(err).split("\n")[0][: len(message)]) == (position, message)


def test_the_caret_stays_under_the_token_when_the_query_holds_tabs_newlines_or_nuls():
    text = "config.lr\n<\t0.1 &\x00"
    err = query_error(text)
    assert err.position == text.index("\x00") and err.query == text
    assert str(err).split("\n") == [
        "unexpected character '\\x00'",
        "  config.lr < 0.1 &?",
        "  " + " " * text.index("\x00") + "^",
    ]

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.contract.guard import (
    MAX_DEPTH,
    MAX_LENGTH,
    Guard,
    GuardEvaluationError,
    GuardSyntaxError,
    parse_guard,
)
from framework.errors import ContractError, TransitionError


def ev(text: str, **context: Any) -> Any:
    return parse_guard(text).evaluate(context)


def syntax_error(text: str) -> GuardSyntaxError:
    with pytest.raises(GuardSyntaxError) as info:
        parse_guard(text)
    return info.value


def evaluation_error(text: str, **context: Any) -> GuardEvaluationError:
    with pytest.raises(GuardEvaluationError) as info:
        parse_guard(text).evaluate(context)
    return info.value


# --- the examples from the contracts ------------------------------------------------------------------------------


def test_contract_examples() -> None:
    assert parse_guard("completed_steps == total_steps").test({"completed_steps": 3, "total_steps": 3})
    assert not parse_guard("completed_steps == total_steps").test({"completed_steps": 2, "total_steps": 3})
    big = parse_guard('payload.size > 1024 and namespace in ["a", "b"]')
    assert big.test({"payload": {"size": 2048}, "namespace": "b"})
    assert not big.test({"payload": {"size": 2048}, "namespace": "c"})
    assert not big.test({"payload": {"size": 10}, "namespace": "a"})
    retry = parse_guard("not (retries >= max_retries)")
    assert retry.test({"retries": 2, "max_retries": 3})
    assert not retry.test({"retries": 3, "max_retries": 3})


# --- literals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("3.25", 3.25),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ("1e+2", 100.0),
        ("'single'", "single"),
        ('"double"', "double"),
        ("''", ""),
        (r"'a\\b'", "a\\b"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'line\nbreak'", "line\nbreak"),
        (r"'tab\tbed'", "tab\tbed"),
        ("'has \"other\" quotes'", 'has "other" quotes'),
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("null", None),
        ("None", None),
        ("[]", []),
        ("[1, 'a', true, null]", [1, "a", True, None]),
        ("[1, 2,]", [1, 2]),
        ("[[1], [2, [3]]]", [[1], [2, [3]]]),
    ],
)
def test_literals(text: str, expected: object) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


def test_whitespace_is_free() -> None:
    assert ev(" \t1\n+\r2 ") == 3
    assert ev("1+2*3") == 7


# --- operators and precedence -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("'a' == 'b'", False),
        ("1 != 2", True),
        ("null == null", True),
        ("[1, 2] == [1, 2]", True),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2.5", True),
        ("2 >= 3", False),
        ("'abc' < 'abd'", True),
        ("2 in [1, 2]", True),
        ("'b' in 'abc'", True),
        ("'z' not in 'abc'", True),
        ("3 not in [1, 2]", True),
        ("1 + 2", 3),
        ("'ab' + 'cd'", "abcd"),
        ("[1] + [2]", [1, 2]),
        ("5 - 7", -2),
        ("6 * 7", 42),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("1.5 * 2", 3.0),
        ("-3", -3),
        ("+3", 3),
        ("- -3", 3),
        ("--3", 3),
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("false or false", False),
        ("not true", False),
        ("not not true", True),
    ],
)
def test_operators(text: str, expected: object) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 3 - 2", 5),  # left-associative
        ("100 // 10 // 2", 5),
        ("2 * 3 % 4", 2),  # same level, left to right: (2 * 3) % 4
        ("-2 // 3", -1),  # unary minus binds tighter than //: (-2) // 3
        ("-(2 // 3)", 0),
        ("1 + 2 == 3", True),  # arithmetic binds tighter than comparison
        ("1 + 1 in [2]", True),
        ("not 1 == 2", True),  # not binds looser than comparison
        ("not 2 in [1]", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not true and false", False),  # not binds tighter than and: (not true) and false
        ("not (true and false)", True),
        ("not false or false", True),
        ("1 < 2 and 2 < 3 or false", True),
    ],
)
def test_precedence(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_and_or_short_circuit() -> None:
    assert ev("false and missing") is False
    assert ev("true or missing") is True
    assert ev("false or true or missing") is True
    assert "unknown name 'missing'" in str(evaluation_error("true and missing"))
    assert "unknown name 'missing'" in str(evaluation_error("false or missing"))


def test_bool_is_not_a_number() -> None:
    assert ev("true == 1") is False
    assert ev("false != 0") is True
    assert ev("1 in [true]") is False
    assert ev("true in [1]") is False
    assert ev("[1] == [true]") is False
    assert ev("1 in s", s={True, 2}) is False
    assert ev("true in s", s={True, 2}) is True
    assert ev("1 in m", m={True: "x"}) is False
    assert (
        evaluation_error("true + 1").message
        == "cannot apply '+' to bool and int, expected two numbers, two strings or two lists"
    )
    assert evaluation_error("-true").message == "unary '-' needs a number, got bool"
    assert evaluation_error("true < 2").message == "cannot compare bool < int, expected two numbers or two strings"


def test_in_on_each_container() -> None:
    assert ev("1 in t", t=(1, 2)) is True
    assert ev("3 in s", s={1, 2}) is False
    assert ev("'k' in m", m={"k": 1}) is True
    assert ev("'v' in m", m={"k": "v"}) is False  # mappings test their keys
    assert ev("[1] in [[1], [2]]") is True
    assert ev("'a' in [1, 'a']") is True


def test_comparison_chains_are_rejected() -> None:
    error = syntax_error("a < b < c")
    assert error.message == "comparisons cannot be chained, found '<' after a comparison; join them with 'and'"
    assert error.offset == 6
    assert syntax_error("a == b in c").offset == 7
    assert syntax_error("a in b not in c").offset == 7
    assert ev("(1 < 2) == true") is True
    assert ev("1 < 2 and 2 < 3") is True


# --- names --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Payload:
    size: int
    meta: dict[str, Any]
    _secret: str = "hidden"

    @property
    def double(self) -> int:
        return self.size * 2


def test_dotted_names_through_mappings_and_objects() -> None:
    payload = Payload(size=10, meta={"owner": SimpleNamespace(name="ops")})
    context = {"payload": payload, "cfg": {"limits": {"max": 5}}}
    assert ev("payload.size", **context) == 10
    assert ev("payload.double", **context) == 20
    assert ev("payload.meta.owner.name == 'ops'", **context) is True
    assert ev("cfg.limits.max + 1", **context) == 6
    assert ev("cfg", **context) == {"limits": {"max": 5}}
    assert ev("d._key", d={"_key": 1}) == 1  # keys are data; only attributes can be private
    assert ev("_top", _top=3) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p._secret", "private attribute '_secret' of 'p' cannot be read by a guard"),
        ("p.__class__", "private attribute '__class__' of 'p' cannot be read by a guard"),
        ("p.size.__class__", "private attribute '__class__' of 'p.size' cannot be read by a guard"),
        ("p.meta.__len__", "'p.meta' has no key '__len__'; available keys: (none)"),  # mappings: keys, not attributes
    ],
)
def test_private_attributes_are_refused(text: str, message: str) -> None:
    assert evaluation_error(text, p=Payload(size=1, meta={})).message == message


def test_unknown_name_lists_available_names_sorted() -> None:
    error = evaluation_error("tota_steps == 3", total_steps=3, completed_steps=1, attempts=0)
    assert error.message == "unknown name 'tota_steps'; available names: attempts, completed_steps, total_steps"
    assert error.offset == 0
    assert error.source == "tota_steps == 3"
    assert str(error) == (
        "unknown name 'tota_steps'; available names: attempts, completed_steps, total_steps "
        "(in guard 'tota_steps == 3' at column 1)"
    )
    assert evaluation_error("x").message == "unknown name 'x'; available names: (none)"


def test_missing_key_and_attribute() -> None:
    error = evaluation_error("1 + a.b.c", a={"b": {"y": 1, "x": 2}})
    assert error.message == "'a.b' has no key 'c'; available keys: x, y"
    assert error.offset == 4
    error = evaluation_error("p.weight", p=Payload(size=1, meta={}))
    assert error.message == "'p' (Payload) has no attribute 'weight'"


# --- functions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len('abc')", 3),
        ("len([1, 2])", 2),
        ("len(m)", 2),
        ("len(s)", 1),
        ("len(t)", 3),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("min([4, 2.5])", 2.5),
        ("max(t)", 3),
        ("max('a', 'c', 'b')", "c"),
        ("min(s)", 9),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("abs(4)", 4),
        ("len([1, 2, 3]) - 1 == max(1, 2)", True),
    ],
)
def test_functions(text: str, expected: object) -> None:
    assert ev(text, m={"a": 1, "b": 2}, s={9}, t=(1, 2, 3)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("len(5)", "len() needs a string, list, tuple, set or mapping, got int"),
        ("len(null)", "len() needs a string, list, tuple, set or mapping, got null"),
        ("abs('x')", "abs() needs a number, got str"),
        ("abs(true)", "abs() needs a number, got bool"),
        ("min([])", "min() of an empty collection has no value"),
        ("max(3)", "max() of one argument needs a list, tuple or set, got int"),
        ("min(1, 'a')", "min() needs all numbers or all strings, got int, str"),
        ("max([true, false])", "max() needs all numbers or all strings, got bool"),
    ],
)
def test_function_errors(text: str, message: str) -> None:
    error = evaluation_error(text)
    assert error.message == message
    assert error.offset == 0


def test_function_names_are_not_reserved() -> None:
    assert ev("len + min", len=1, min=2) == 3


# --- syntax errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("", "empty guard, expected an expression", 0),
        ("   ", "empty guard, expected an expression", 0),
        ("a and", "expected an operand after 'and', found end of guard", 5),
        ("a or or b", "expected an operand after 'or', found 'or'", 5),
        ("1 +", "expected an operand after '+', found end of guard", 3),
        ("a == not b", "expected an operand after '==', found 'not'", 5),
        ("()", "expected an operand after '(', found ')'", 1),
        ("[1,,2]", "expected an operand after ',', found ','", 3),
        (")", "expected an operand, found ')'", 0),
        ("'abc", "unterminated string, expected a closing '", 0),
        ('x == "abc', 'unterminated string, expected a closing "', 5),
        ("'abc\\'", "unterminated string, expected a closing '", 0),
        ("'a\\qb'", "unknown escape '\\q' in a string, expected one of \\\\ \\' \\\" \\n \\t", 2),
        ("a b", "unexpected name 'b' after a complete expression, expected an operator or end of guard", 2),
        ("a == 1 2", "unexpected number 2 after a complete expression, expected an operator or end of guard", 7),
        ("(a))", "unexpected ')' after a complete expression, expected an operator or end of guard", 3),
        ("x 'y'", "unexpected string 'y' after a complete expression, expected an operator or end of guard", 2),
        ("a not b", "unexpected 'not' after a complete expression, expected an operator or end of guard", 2),
        ("a && b", "'&&' is not supported, use 'and'", 2),
        ("a || b", "'||' is not supported, use 'or'", 2),
        ("!a", "'!' is not supported, use 'not'", 0),
        ("a = 1", "'=' is not supported, use '==' to compare", 2),
        ("a @ b", "unexpected character '@'", 2),
        ("a & b", "unexpected character '&'", 2),
        ("é", "unexpected character 'é'", 0),
        ("\u0661 == 1", "unexpected character '\u0661'", 0),  # a non-ASCII digit is not a digit here
        ("a.", "unexpected '.', expected a name after '.' or a digit after a decimal point", 1),
        ("a..b", "unexpected '.', expected a name after '.' or a digit after a decimal point", 1),
        ("1.", "unexpected '.', expected a name after '.' or a digit after a decimal point", 1),
        ("true.x", "'true' is a keyword and cannot start a dotted name", 0),
        ("(a", "expected ')' to close '(' at column 1, found end of guard", 2),
        ("(a ]", "expected ')' to close '(' at column 1, found ']'", 3),
        ("[1, 2", "expected ',' or ']' to close '[' at column 1, found end of guard", 5),
        ("x in [1 2]", "expected ',' or ']' to close '[' at column 6, found number 2", 8),
        ("len(x", "expected ',' or ')' to close '(' at column 4, found end of guard", 5),
        ("foo(1)", "unknown function 'foo', expected one of abs, len, max, min", 0),
        ("a.b(1)", "unknown function 'a.b', expected one of abs, len, max, min", 0),
        ("1 + len(1, 2)", "len() takes exactly 1 argument, got 2", 4),
        ("abs()", "abs() takes exactly 1 argument, got 0", 0),
        ("min()", "min() takes at least 1 argument, got 0", 0),
    ],
)
def test_syntax_errors(text: str, message: str, offset: int) -> None:
    error = syntax_error(text)
    assert error.message == message
    assert error.offset == offset
    assert str(error) == f"{message} (at column {offset + 1})"


def test_error_classes_belong_to_the_error_tree() -> None:
    assert isinstance(syntax_error("a &&"), ContractError)
    assert isinstance(evaluation_error("x"), TransitionError)


def test_non_string_guard_is_a_syntax_error() -> None:
    error = syntax_error(42)  # type: ignore[arg-type]
    assert error.message == "a guard must be a string, got int"


# --- evaluation errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("n < 'x'", "cannot compare int < str, expected two numbers or two strings", 2),
        ("'x' >= n", "cannot compare str >= int, expected two numbers or two strings", 4),
        ("[1] < [2]", "cannot compare list < list, expected two numbers or two strings", 4),
        ("null > 1", "cannot compare null > int, expected two numbers or two strings", 5),
        ("n + 'x'", "cannot apply '+' to int and str, expected two numbers, two strings or two lists", 2),
        ("'x' * 3", "cannot apply '*' to str and int, expected two numbers", 4),
        ("1 + 1 - 'a'", "cannot apply '-' to int and str, expected two numbers", 6),
        ("n / 0", "division by zero in '/'", 2),
        ("n // 0.0", "division by zero in '//'", 2),
        ("n % 0", "division by zero in '%'", 2),
        ("n and true", "'and' needs bool operands, got int", 2),
        ("true and 'x'", "'and' needs bool operands, got str", 5),
        ("false or null", "'or' needs bool operands, got null", 6),
        ("not n", "'not' needs a bool, got int", 0),
        ("-'x'", "unary '-' needs a number, got str", 0),
        ("1 in n", "'in' needs a list, tuple, set, string or mapping on the right, got int", 2),
        ("1 not in 'abc'", "'not in' on a string needs a string on the left, got int", 2),
    ],
)
def test_evaluation_errors(text: str, message: str, offset: int) -> None:
    error = evaluation_error(text, n=5)
    assert error.message == message
    assert error.offset == offset
    assert str(error) == f"{message} (in guard {text!r} at column {offset + 1})"


def test_overflow_is_an_evaluation_error() -> None:
    huge = "9" * 400
    assert evaluation_error(f"{huge} / 3").message == "'/' failed: integer division result too large for a float"


def test_test_requires_a_bool() -> None:
    guard = parse_guard("count + 1")
    assert guard.evaluate({"count": 1}) == 2
    with pytest.raises(GuardEvaluationError) as info:
        guard.test({"count": 1})
    assert info.value.message == "guard must evaluate to a bool, got int"
    with pytest.raises(GuardEvaluationError, match="got null"):
        parse_guard("null").test({})
    assert parse_guard("flag").test({"flag": True}) is True


# --- limits -------------------------------------------------------------------------------------------------------


def test_length_limit() -> None:
    assert MAX_LENGTH == 1000
    longest = "x" + " " * (MAX_LENGTH - 1)
    assert parse_guard(longest).names == {"x"}
    error = syntax_error(longest + " ")
    assert error.message == "guard is 1001 characters long, at most 1000 are allowed"
    assert error.offset == 1000


@pytest.mark.parametrize(
    ("opener", "closer", "leaf", "levels", "offset"),
    [
        ("(", ")", "1", 50, 50),
        ("[", "]", "", 50, 50),
        ("abs(", ")", "1", 50, 203),  # the call's '(' opens the level
        ("-", "", "1", 50, 50),
        ("not ", "", "true", 50, 200),
        ("+(", ")", "1", 25, 50),  # a sign and a parenthesis: two levels each
    ],
)
def test_depth_limit(opener: str, closer: str, leaf: str, levels: int, offset: int) -> None:
    assert MAX_DEPTH == 50
    deepest = opener * levels + leaf + closer * levels
    value = ev(deepest)
    if leaf:
        assert value == ev(leaf)
    else:
        for _ in range(levels - 1):
            (value,) = value
        assert value == []
    too_deep = opener * (levels + 1) + leaf + closer * (levels + 1)
    error = syntax_error(too_deep)
    assert error.message == "guard nests deeper than 50 levels"
    assert error.offset == offset


def test_long_flat_chains_are_not_deep() -> None:
    # flat folds: neither parsing nor evaluation recurses per operator, and nothing counts towards MAX_DEPTH
    assert ev("+".join(["1"] * 500)) == 500
    assert ev("*".join(["1"] * 500)) == 1
    assert ev(" and ".join(["true"] * 111)) is True
    assert ev(" or ".join(["false"] * 111)) is False


# --- names and roots, the Guard value -----------------------------------------------------------------------------


def test_names_and_roots() -> None:
    guard = parse_guard('payload.size > 1024 and namespace in ["a", b.c.d] or len(payload.items) > max(x, 1)')
    assert guard.names == frozenset({"payload.size", "namespace", "b.c.d", "payload.items", "x"})
    assert guard.roots == frozenset({"payload", "namespace", "b", "x"})
    assert parse_guard("1 + 2 == 3").names == frozenset()
    assert parse_guard("len('x') == 1").roots == frozenset()


def test_guard_is_an_immutable_value() -> None:
    guard = parse_guard("a == 1")
    assert guard.source == "a == 1"
    assert guard == parse_guard("a == 1")
    assert guard != parse_guard("a == 2")
    assert hash(guard) == hash(parse_guard("a == 1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        guard.source = "b"  # type: ignore[misc]
    assert isinstance(guard, Guard)
    assert guard.test({"a": 1}) is True  # evaluation leaves the guard reusable
    assert guard.test({"a": 2}) is False


# --- properties ---------------------------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text())
def test_any_text_parses_or_raises_a_syntax_error(text: str) -> None:
    try:
        guard = parse_guard(text)
    except GuardSyntaxError as error:
        assert 0 <= error.offset <= len(text)
    else:
        assert guard.source == text


GUARDISH = [
    "a", "b.c", "1", "2.5", "'s'", '"t"', "true", "null", "and", "or", "not", "in", "==", "!=", "<", "<=", ">",
    ">=", "+", "-", "*", "/", "//", "%", "(", ")", "[", "]", ",", "len", "min", "max", "abs", "&&", "!", "=", ".",
    "'", "\\", "x.y.z", "foo",
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3), st.booleans(), st.none(),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.sampled_from("cyz"), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(GUARDISH), max_size=12).map(" ".join), st.data())
def test_token_soup_parses_or_raises_and_evaluates_or_raises(text: str, data: st.DataObject) -> None:
    # Near-miss guards reach deep into the parser; whatever parses must evaluate or raise GuardEvaluationError only.
    try:
        guard = parse_guard(text)
    except GuardSyntaxError:
        return
    context = {root: data.draw(VALUES) for root in guard.roots}
    try:
        guard.evaluate(context)
    except GuardEvaluationError as error:
        assert error.source == text


class Gen(NamedTuple):
    text: str
    value: Any
    prec: int  # 1 or, 2 and, 3 not, 4 comparison, 5 sum, 6 product, 7 unary, 8 atom
    names: frozenset[str]


CONTEXT_NAMES = {"x": 3, "y": -4, "obj.n": 7, "obj.inner.m": 0, "flag": True}
CONTEXT = {"x": 3, "y": -4, "obj": {"n": 7, "inner": SimpleNamespace(m=0)}, "flag": True}


def operand(gen: Gen, at_least: int, extra_parens: bool) -> str:
    return f"({gen.text})" if gen.prec < at_least or extra_parens else gen.text


@st.composite
def int_exprs(draw: st.DrawFn, depth: int) -> Gen:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            n = draw(st.integers(0, 30))
            return Gen(str(n), n, 8, frozenset())
        name = draw(st.sampled_from(["x", "y", "obj.n", "obj.inner.m"]))
        return Gen(name, CONTEXT_NAMES[name], 8, frozenset({name}))
    kind = draw(st.sampled_from(["+", "-", "*", "//", "%", "neg", "abs", "len", "min", "max"]))
    left, paren = draw(int_exprs(depth - 1)), draw(st.booleans())
    if kind == "neg":
        return Gen("-" + operand(left, 7, paren), -left.value, 7, left.names)
    if kind == "abs":
        return Gen(f"abs({left.text})", abs(left.value), 8, left.names)
    right = draw(int_exprs(depth - 1))
    names = left.names | right.names
    if kind == "len":
        return Gen(f"len([{left.text}, {right.text}])", 2, 8, names)
    if kind in ("min", "max"):
        pick = min if kind == "min" else max
        args = f"[{left.text}, {right.text}]" if paren else f"{left.text}, {right.text}"
        return Gen(f"{kind}({args})", pick(left.value, right.value), 8, names)
    if kind in ("//", "%") and right.value == 0:
        kind = "+"
    prec = 5 if kind in ("+", "-") else 6
    space = draw(st.sampled_from(["", " "]))
    text = f"{operand(left, prec, paren)}{space}{kind}{space}{operand(right, prec + 1, draw(st.booleans()))}"
    a, b = left.value, right.value
    value = {"+": a + b, "-": a - b, "*": a * b}.get(kind) if kind in "+-*" else (a // b if kind == "//" else a % b)
    return Gen(text, value, prec, names)


@st.composite
def bool_exprs(draw: st.DrawFn, depth: int) -> Gen:
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        word = draw(st.sampled_from(["true", "True", "false", "False", "flag"]))
        names = frozenset({"flag"}) if word == "flag" else frozenset()
        return Gen(word, word in ("true", "True", "flag"), 8, names)
    kind = draw(st.sampled_from(["and", "or", "not", "cmp", "cmp", "in", "bool=="]))
    paren = draw(st.booleans())
    if kind == "not":
        inner = draw(bool_exprs(depth - 1))
        return Gen("not " + operand(inner, 3, paren), not inner.value, 3, inner.names)
    if kind in ("and", "or"):
        left, right = draw(bool_exprs(depth - 1)), draw(bool_exprs(depth - 1))
        prec = 2 if kind == "and" else 1
        value = (left.value and right.value) if kind == "and" else (left.value or right.value)
        text = f"{operand(left, prec, paren)} {kind} {operand(right, prec + 1, draw(st.booleans()))}"
        return Gen(text, value, prec, left.names | right.names)
    if kind == "bool==":
        left, right = draw(bool_exprs(depth - 1)), draw(bool_exprs(depth - 1))
        text = f"{operand(left, 5, False)} == {operand(right, 5, False)}"
        return Gen(text, left.value == right.value, 4, left.names | right.names)
    left = draw(int_exprs(depth - 1))
    if kind == "in":
        items = draw(st.lists(int_exprs(depth - 1), max_size=3))
        negated = draw(st.booleans())
        found = any(left.value == item.value for item in items)
        text = f"{operand(left, 5, paren)} {'not in' if negated else 'in'} [{', '.join(i.text for i in items)}]"
        names = left.names.union(*(item.names for item in items))
        return Gen(text, found != negated, 4, names)
    right = draw(int_exprs(depth - 1))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
    a, b = left.value, right.value
    value = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return Gen(f"{operand(left, 5, paren)} {op} {operand(right, 5, False)}", value, 4, left.names | right.names)


@settings(max_examples=500)
@given(st.one_of(int_exprs(4), bool_exprs(4)))
def test_generated_expressions_evaluate_to_their_reference_value(gen: Gen) -> None:
    guard = parse_guard(gen.text)
    result = guard.evaluate(CONTEXT)
    assert result == gen.value
    assert type(result) is type(gen.value)
    assert guard.names == gen.names
    assert guard.roots == frozenset(name.split(".")[0] for name in gen.names)

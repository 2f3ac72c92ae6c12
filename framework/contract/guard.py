"""Guards: the small, safe expression language of FSM transition and workflow step conditions.

A guard such as ``payload.size > 1024 and namespace in ["a", "b"]`` is tokenized and parsed by hand into an
immutable AST, then evaluated against a context mapping; ``eval`` and Python's ``ast`` are never involved.

Grammar, lowest precedence first::

    guard      := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "//" | "%") unary)*
    unary      := ("-" | "+") unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null" | "True" | "False" | "None" | NAME ("." NAME)*
                | "(" or_expr ")" | "[" [items] "]" | ("len" | "min" | "max" | "abs") "(" items ")"
    items      := or_expr ("," or_expr)* [","]

Comparisons do not chain: ``a < b < c`` is a syntax error rather than Python's ``a < b and b < c``, whose reading of
``a == b in c`` surprises; write the ``and`` out. Semantics are strict: ``and``, ``or`` and ``not`` need bools,
arithmetic needs numbers (bool is not one), ordering needs two numbers or two strings, and a bool never equals a
number, also inside lists and as a member of a collection.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Final

from framework.errors import ContractError, TransitionError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Guard", "GuardEvaluationError", "GuardSyntaxError", "parse_guard"]

MAX_LENGTH: Final = 1000
MAX_DEPTH: Final = 50


class GuardSyntaxError(ContractError):
    """A guard's text is not a valid expression; ``offset`` is the 0-based character where the problem is."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at column {offset + 1})")
        self.message = message
        self.offset = offset


class GuardEvaluationError(TransitionError):
    """A guard could not be evaluated against a context: a missing name, a type mismatch, division by zero."""

    def __init__(self, message: str, offset: int, source: str = "") -> None:
        super().__init__(f"{message} (in guard {source!r} at column {offset + 1})")
        self.message = message
        self.offset = offset
        self.source = source


# ASCII classes throughout: \d and str.isidentifier() accept characters that int() and readers do not. Every
# alternative is unambiguous, so matching stays linear even on hostile input.
_TOKEN: Final = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|//|[<>+\-*/%()\[\],])""",
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})
_CONSTANTS: Final[Mapping[str, object]] = {
    "true": True, "True": True, "false": False, "False": False, "null": None, "None": None,
}  # fmt: skip
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_REFUSED: Final = {
    "&&": "'&&' is not supported, use 'and'", "||": "'||' is not supported, use 'or'",
    "!": "'!' is not supported, use 'not'", "=": "'=' is not supported, use '==' to compare",
    ".": "unexpected '.', expected a name after '.' or a digit after a decimal point",
    '"': 'unterminated string, expected a closing "', "'": "unterminated string, expected a closing '",
}  # fmt: skip
_FUNCTIONS: Final = ("abs", "len", "max", "min")
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "string", "name", "constant", "op" (operators and keywords) or "end"
    text: str
    offset: int
    value: object = None

    def describe(self) -> str:
        if self.kind in ("number", "string"):
            return f"{self.kind} {self.text}"
        return {"end": "end of guard", "name": f"name {self.text!r}"}.get(self.kind, repr(self.text))


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            refused = _REFUSED.get(text[pos : pos + 2]) or _REFUSED.get(text[pos])
            raise GuardSyntaxError(refused or f"unexpected character {text[pos]!r}", pos)
        kind, word = match.lastgroup or "", match.group()
        if kind == "number":
            tokens.append(_Token(kind, word, pos, int(word) if word.isdigit() else float(word)))
        elif kind == "string":
            for escape in re.finditer(r"\\(.)", word, re.DOTALL):
                if escape.group(1) not in _ESCAPES:
                    message = f"unknown escape '{escape.group()}' in a string, expected one of \\\\ \\' \\\" \\n \\t"
                    raise GuardSyntaxError(message, pos + escape.start())
            value = re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], word[1:-1], flags=re.DOTALL)
            tokens.append(_Token(kind, word, pos, value))
        elif kind == "name":
            first = word.split(".")[0]
            if first in _KEYWORDS or first in _CONSTANTS:
                if first != word:
                    raise GuardSyntaxError(f"{first!r} is a keyword and cannot start a dotted name", pos)
                kind = "op" if word in _KEYWORDS else "constant"
            tokens.append(_Token(kind, word, pos, _CONSTANTS.get(word)))
        elif kind == "op":
            tokens.append(_Token(kind, word, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the AST: ``kind`` is literal, name, list, unary, logical, compare, arith or call; ``value`` the
    literal, the name's path, the operator, the function or, for arith, the (operator, offset) pairs between the
    children. Logical and arith are flat folds, so long chains deepen neither the tree nor the evaluator's recursion.
    """

    kind: str
    offset: int
    value: Any = None
    children: tuple[Node, ...] = ()


_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_SUM: Final = ("+", "-")
_NOT: Final = ("not",)
_SIGNS: Final = ("-", "+")
_PRODUCT: Final = ("*", "/", "//", "%")


class _Parser:
    # A method per precedence level and no helpers between them: a nesting level costs about nine stack frames,
    # so MAX_DEPTH levels stay far below Python's recursion limit.
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def at(self, *ops: str) -> bool:
        return self.tokens[self.pos].kind == "op" and self.tokens[self.pos].text in ops

    def take(self) -> _Token:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def enter(self, opener: _Token) -> None:
        if self.depth >= MAX_DEPTH:
            raise GuardSyntaxError(f"guard nests deeper than {MAX_DEPTH} levels", opener.offset)
        self.depth += 1

    def guard(self) -> Node:
        if self.tokens[self.pos].kind == "end":
            raise GuardSyntaxError("empty guard, expected an expression", 0)
        node, token = self.logical("or"), self.tokens[self.pos]
        if token.kind != "end":
            message = f"unexpected {token.describe()} after a complete expression, expected an operator or end of guard"
            raise GuardSyntaxError(message, token.offset)
        return node

    def logical(self, op: str) -> Node:
        operands = [self.logical("and") if op == "or" else self.prefix(_NOT)]
        offset = self.tokens[self.pos].offset
        while self.at(op):
            self.take()
            operands.append(self.logical("and") if op == "or" else self.prefix(_NOT))
        return operands[0] if len(operands) == 1 else Node("logical", offset, op, tuple(operands))

    def prefix(self, ops: tuple[str, ...]) -> Node:
        if not self.at(*ops):
            return self.comparison() if ops is _NOT else self.primary()
        token = self.take()
        self.enter(token)
        node = Node("unary", token.offset, token.text, (self.prefix(ops),))
        self.depth -= 1
        return node

    def comparison_op(self) -> str | None:
        if self.at(*_COMPARISONS):
            return self.tokens[self.pos].text
        following = self.tokens[self.pos + 1] if self.at("not") else None
        return "not in" if following is not None and following.kind == "op" and following.text == "in" else None

    def comparison(self) -> Node:
        left, op = self.arith(_SUM), self.comparison_op()
        if op is None:
            return left
        offset = self.take().offset
        if op == "not in":
            self.take()
        node = Node("compare", offset, op, (left, self.arith(_SUM)))
        chained = self.comparison_op()
        if chained is not None:
            message = f"comparisons cannot be chained, found {chained!r} after a comparison; join them with 'and'"
            raise GuardSyntaxError(message, self.tokens[self.pos].offset)
        return node

    def arith(self, ops: tuple[str, ...]) -> Node:
        operands, operators = [self.arith(_PRODUCT) if ops is _SUM else self.prefix(_SIGNS)], []
        while self.at(*ops):
            operators.append(self.take())
            operands.append(self.arith(_PRODUCT) if ops is _SUM else self.prefix(_SIGNS))
        if not operators:
            return operands[0]
        return Node("arith", operators[0].offset, tuple((t.text, t.offset) for t in operators), tuple(operands))

    def primary(self) -> Node:
        token = self.take()
        if token.kind in ("number", "string", "constant"):
            return Node("literal", token.offset, token.value)
        if token.kind == "name" and not self.at("("):
            return Node("name", token.offset, tuple(token.text.split(".")))
        if token.kind == "name":
            if token.text not in _FUNCTIONS:
                message = f"unknown function {token.text!r}, expected one of {', '.join(_FUNCTIONS)}"
                raise GuardSyntaxError(message, token.offset)
            args = self.items(self.take(), ")")
            if token.text in ("len", "abs") and len(args) != 1:
                raise GuardSyntaxError(f"{token.text}() takes exactly 1 argument, got {len(args)}", token.offset)
            if not args:
                raise GuardSyntaxError(f"{token.text}() takes at least 1 argument, got 0", token.offset)
            return Node("call", token.offset, token.text, args)
        if token.kind == "op" and token.text == "[":
            return Node("list", token.offset, None, self.items(token, "]"))
        if token.kind == "op" and token.text == "(":
            self.enter(token)
            node = self.logical("or")
            self.close(token, ")", "')'")
            return node
        after = f" after {self.tokens[self.pos - 2].describe()}" if self.pos > 1 else ""
        raise GuardSyntaxError(f"expected an operand{after}, found {token.describe()}", token.offset)

    def items(self, opener: _Token, closer: str) -> tuple[Node, ...]:
        self.enter(opener)
        items: list[Node] = []
        while not self.at(closer):
            items.append(self.logical("or"))
            if not self.at(","):
                break
            self.take()
        self.close(opener, closer, f"',' or {closer!r}")
        return tuple(items)

    def close(self, opener: _Token, closer: str, expected: str) -> None:
        token = self.take()
        if token.kind != "op" or token.text != closer:
            where = f"to close {opener.text!r} at column {opener.offset + 1}"
            raise GuardSyntaxError(f"expected {expected} {where}, found {token.describe()}", token.offset)
        self.depth -= 1


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _contains(op: str, container: object, item: object, offset: int) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise GuardEvaluationError(f"{op!r} on a string needs a string on the left, got {_type(item)}", offset)
        return item in container
    if not isinstance(container, list | tuple | Set | Mapping):
        message = f"{op!r} needs a list, tuple, set, string or mapping on the right, got {_type(container)}"
        raise GuardEvaluationError(message, offset)
    # Strict equality rather than hashing, which would find 1 in {True}; guard collections are small.
    return any(_equal(item, member) for member in container)


_OPERATIONS: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "+": operator.add, "-": operator.sub,
    "*": operator.mul, "/": operator.truediv, "//": operator.floordiv, "%": operator.mod,
}  # fmt: skip


def _compare(op: str, a: object, b: object, offset: int) -> bool:
    if op in ("==", "!="):
        return _equal(a, b) == (op == "==")
    if op in ("in", "not in"):
        return _contains(op, b, a, offset) == (op == "in")
    if not (_is_number(a) and _is_number(b)) and not (isinstance(a, str) and isinstance(b, str)):
        message = f"cannot compare {_type(a)} {op} {_type(b)}, expected two numbers or two strings"
        raise GuardEvaluationError(message, offset)
    return bool(_OPERATIONS[op](a, b))


def _arithmetic(op: str, a: object, b: object, offset: int) -> object:
    if _is_number(a) and _is_number(b):
        if op in ("/", "//", "%") and b == 0:
            raise GuardEvaluationError(f"division by zero in {op!r}", offset)
        try:
            return _OPERATIONS[op](a, b)
        except ArithmeticError as exc:  # e.g. an int too large to divide as a float
            raise GuardEvaluationError(f"{op!r} failed: {exc}", offset) from None
    if op == "+" and type(a) is type(b) and isinstance(a, str | list | tuple):
        return _OPERATIONS[op](a, b)
    allowed = "two numbers, two strings or two lists" if op == "+" else "two numbers"
    raise GuardEvaluationError(f"cannot apply {op!r} to {_type(a)} and {_type(b)}, expected {allowed}", offset)


def _call(function: str, args: list[Any], offset: int) -> object:
    if function == "len":
        if not isinstance(args[0], str | list | tuple | Set | Mapping):
            message = f"len() needs a string, list, tuple, set or mapping, got {_type(args[0])}"
            raise GuardEvaluationError(message, offset)
        return len(args[0])
    if function == "abs":
        if not _is_number(args[0]):
            raise GuardEvaluationError(f"abs() needs a number, got {_type(args[0])}", offset)
        return abs(args[0])
    items = args
    if len(args) == 1:
        if not isinstance(args[0], list | tuple | Set):
            message = f"{function}() of one argument needs a list, tuple or set, got {_type(args[0])}"
            raise GuardEvaluationError(message, offset)
        items = list(args[0])
    if not items:
        raise GuardEvaluationError(f"{function}() of an empty collection has no value", offset)
    if not (all(_is_number(x) for x in items) or all(isinstance(x, str) for x in items)):
        kinds = ", ".join(sorted({_type(x) for x in items}))
        raise GuardEvaluationError(f"{function}() needs all numbers or all strings, got {kinds}", offset)
    return min(items) if function == "min" else max(items)


def _resolve(path: tuple[str, ...], offset: int, context: Mapping[str, Any]) -> object:
    if path[0] not in context:
        available = ", ".join(sorted(map(str, context))) or "(none)"
        raise GuardEvaluationError(f"unknown name {path[0]!r}; available names: {available}", offset)
    value: object = context[path[0]]
    for i, segment in enumerate(path[1:], start=1):
        owner = ".".join(path[:i])
        if isinstance(value, Mapping):
            if segment not in value:
                keys = ", ".join(sorted(map(str, value))) or "(none)"
                raise GuardEvaluationError(f"{owner!r} has no key {segment!r}; available keys: {keys}", offset)
            value = value[segment]
        elif segment.startswith("_"):
            raise GuardEvaluationError(f"private attribute {segment!r} of {owner!r} cannot be read by a guard", offset)
        else:
            found = getattr(value, segment, _MISSING)  # one lookup: properties may be costly
            if found is _MISSING:
                raise GuardEvaluationError(f"{owner!r} ({_type(value)}) has no attribute {segment!r}", offset)
            value = found
    return value


def _evaluate(node: Node, context: Mapping[str, Any]) -> Any:
    kind, op, offset = node.kind, node.value, node.offset
    if kind == "literal":
        return node.value
    if kind == "name":
        return _resolve(node.value, offset, context)
    if kind == "logical":
        decisive = op == "or"  # the value that settles the result without looking further
        for child in node.children:
            value = _evaluate(child, context)
            if not isinstance(value, bool):
                raise GuardEvaluationError(f"{op!r} needs bool operands, got {_type(value)}", offset)
            if value is decisive:
                return decisive
        return not decisive
    values = [_evaluate(child, context) for child in node.children]
    if kind == "list":
        return values
    if kind == "call":
        return _call(op, values, offset)
    if kind == "compare":
        return _compare(op, values[0], values[1], offset)
    if kind == "arith":
        result = values[0]
        for (operator_, at), value in zip(op, values[1:], strict=True):
            result = _arithmetic(operator_, result, value, at)
        return result
    if op == "not":
        if not isinstance(values[0], bool):
            raise GuardEvaluationError(f"'not' needs a bool, got {_type(values[0])}", offset)
        return not values[0]
    if not _is_number(values[0]):
        raise GuardEvaluationError(f"unary {op!r} needs a number, got {_type(values[0])}", offset)
    return -values[0] if op == "-" else values[0]


@dataclass(frozen=True)
class Guard:
    """A parsed guard. ``names`` are the dotted names it reads, ``roots`` their first segments."""

    source: str
    names: frozenset[str]
    roots: frozenset[str]
    expression: Node = field(repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            return _evaluate(self.expression, context)
        except GuardEvaluationError as error:  # raised without the source, which only the guard knows
            raise GuardEvaluationError(error.message, error.offset, self.source) from None

    def test(self, context: Mapping[str, Any]) -> bool:
        result = self.evaluate(context)
        if not isinstance(result, bool):
            raise GuardEvaluationError(f"guard must evaluate to a bool, got {_type(result)}", 0, self.source)
        return result


def _names(root: Node) -> frozenset[str]:
    found: set[str] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        pending.extend(node.children)
        if node.kind == "name":
            found.add(".".join(node.value))
    return frozenset(found)


def parse_guard(text: str) -> Guard:
    """Parse a guard's text; raises :class:`GuardSyntaxError`, and nothing else, for any text that is not a guard."""
    if not isinstance(text, str):
        raise GuardSyntaxError(f"a guard must be a string, got {_type(text)}", 0)
    if len(text) > MAX_LENGTH:
        raise GuardSyntaxError(f"guard is {len(text)} characters long, at most {MAX_LENGTH} are allowed", MAX_LENGTH)
    expression = _Parser(_tokenize(text)).guard()
    names = _names(expression)
    return Guard(text, names, frozenset(name.split(".")[0] for name in names), expression)

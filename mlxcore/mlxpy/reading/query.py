"""The query language of :meth:`Reader.filter`: an explicit grammar, parsed into a tree and
evaluated on a pandas DataFrame. Nothing is ever passed to ``eval``.

    query      := or
    or         := and (("|" | "or") and)*
    and        := not (("&" | "and") not)*
    not        := ("~" | "not") not | "(" query ")" | comparison
    comparison := operand [op operand]        # a lone key tests that the key exists
                | operand ("in" | "not in") (list | key)   # a key whose values are lists
                | key ("contains" | "not contains") operand  # "x" in key, run by run
    op         := == | != | < | <= | > | >=
    operand    := key | number | string | true | false | none
    list       := "[" [literal ("," literal)*] "]"
    key        := name ("." name)*           # config.optimizer.lr, train.loss.last

A key whose values are lists is compared run by run (``'vision' in config.tags``, ``config.task
in config.tasks``); runs whose value there is not a list are not members. ``tags contains
"good"`` is ``"good" in tags`` written the other way round.

Limits, so that no input can crash the parser or the evaluator with anything but a
:class:`QueryError`: at most :data:`MAX_DEPTH` levels of ``(``, ``not`` and ``~`` nest, and a
number has at most :data:`MAX_NUMBER_LENGTH` characters. Numbers use the ASCII digits 0-9; a
float beyond the float range reads as infinity (``1e999``) or zero (``1e-999``), as ``float()``
does.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, cast

from mlxpy.errors import MlxpyError


class QueryError(MlxpyError):
    """A query does not parse or names an unknown key; the message points at the token.

    The query is shown one character per character (a tab or newline as a space, a NUL or other
    unprintable character as '?'), so that the caret stays under the token."""

    def __init__(self, query: str, position: int, message: str) -> None:
        shown = "".join(c if c.isprintable() else " " if c.isspace() else "?" for c in query)
        caret = " " * position + "^"
        super().__init__(f"{message}\n  {shown}\n  {caret}")
        self.query = query
        self.position = position


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?(?![A-Za-z_]))
  | (?P<string>'(?:[^'\\]|\\[\s\S])*'|"(?:[^"\\]|\\[\s\S])*")  # \ escapes any character
  | (?P<op>==|!=|<=|>=|<|>|&&|\|\||[&|~()\[\],])
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)
    """,
    re.VERBOSE,
)
MAX_DEPTH = 100
"""Most levels of ``(``, ``not`` and ``~`` a query may nest. Parsing and evaluating recurse once
per level; 100 is far more than a real query needs and keeps both well inside Python's
recursion limit (a few hundred frames at most), so no RecursionError can escape."""
MAX_NUMBER_LENGTH = 100
"""Longest number literal, in characters. Python refuses to convert integers of more than 4300
digits (a guard against quadratic time), and no threshold in a query needs a hundred."""

_LITERAL_WORDS = {"true": True, "false": False, "none": None, "null": None}
_KEYWORDS = {"and", "or", "not", "in", "contains"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">=", "in", "not in"}
_MEMBERSHIP = ("in", "not in")
#: ``key contains x`` is ``x in key``
_CONTAINS = {"contains": "in", "not contains": "not in"}
_IN_TAKES = "takes a list such as [1, 2], or a key whose values are lists"


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | op | name | keyword | literal | end
    text: str
    value: Any
    pos: int


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:
            raise _unexpected(query, pos)
        kind, text = match.lastgroup, match.group()
        if kind == "number":
            if len(text) > MAX_NUMBER_LENGTH:
                raise QueryError(
                    query,
                    pos,
                    f"a number has at most {MAX_NUMBER_LENGTH} characters, this one has "
                    f"{len(text)}",
                )
            is_float = any(c in text for c in ".eE")
            tokens.append(Token(kind, text, float(text) if is_float else int(text), pos))
        elif kind == "string":
            body = text[1:-1]
            value = re.sub(r"\\([\s\S])", r"\1", body)
            tokens.append(Token(kind, text, value, pos))
        elif kind == "op":
            op = {"&&": "&", "||": "|"}.get(text, text)
            tokens.append(Token(kind, op, op, pos))
        elif kind == "name":
            lower = text.lower()
            if lower in _LITERAL_WORDS:
                tokens.append(Token("literal", text, _LITERAL_WORDS[lower], pos))
            elif lower in _KEYWORDS:
                tokens.append(Token("keyword", lower, lower, pos))
            else:
                tokens.append(Token(kind, text, text, pos))
        pos = match.end()
    tokens.append(Token("end", "", None, len(query)))
    return tokens


def _unexpected(query: str, pos: int) -> QueryError:
    """The error for a character no token starts with, with a hint where one helps."""
    char = query[pos]
    if char in "'\"":
        return QueryError(query, pos, f"unterminated string: no closing {char!r}")
    non_ascii_digit = char.isnumeric() and not char.isascii()  # '²', '١', '１'
    hint = "; numbers are written with the digits 0-9" if non_ascii_digit else ""
    return QueryError(query, pos, f"unexpected character {char!r}{hint}")


# -- syntax tree --------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    value: Any  # a list literal is a tuple
    pos: int

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, tuple)


@dataclass(frozen=True)
class Compare:
    left: Any
    op: str
    right: Any
    pos: int


@dataclass(frozen=True)
class Exists:
    key: Key


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.depth = 0  # '(', 'not' and '~' currently open

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, message: str, token: Token | None = None) -> QueryError:
        token = token or self.tok
        found = "the end of the query" if token.kind == "end" else repr(token.text)
        return QueryError(self.query, token.pos, f"{message}, found {found}")

    def accept(self, *texts: str) -> Token | None:
        if self.tok.kind in ("op", "keyword") and self.tok.text in texts:
            self.i += 1
            return self.tokens[self.i - 1]
        return None

    def parse(self) -> Any:
        if self.tok.kind == "end":
            return None
        tree = self.parse_or()
        if self.tok.kind != "end":
            raise self.fail("expected '&', '|', 'and', 'or' or the end of the query")
        return tree

    def parse_or(self) -> Any:
        parts = [self.parse_and()]
        while self.accept("|", "or"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def parse_and(self) -> Any:
        parts = [self.parse_not()]
        while self.accept("&", "and"):
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def parse_not(self) -> Any:
        token = self.tok
        if self.accept("~", "not"):
            self.enter(token)
            tree = Not(self.parse_not())
        elif self.accept("("):
            self.enter(token)
            tree = self.parse_or()
            if not self.accept(")"):
                raise self.fail("expected ')'")
        else:
            return self.parse_comparison()
        self.depth -= 1
        return tree

    def enter(self, token: Token) -> None:
        """One more level of nesting, refused past MAX_DEPTH before it can recurse too deep."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(
                self.query,
                token.pos,
                f"the query nests deeper than {MAX_DEPTH} levels of '(', 'not' and '~'",
            )

    def parse_comparison(self) -> Any:
        start = self.tok
        left = self.parse_operand()
        op_token = self.tok
        op = None
        if op_token.kind == "op" and op_token.text in _COMPARISONS:
            op = op_token.text
            self.i += 1
        elif self.accept("in"):
            op = "in"
        elif self.accept("contains"):
            op = "contains"
        elif (
            op_token.kind == "keyword"
            and op_token.text == "not"
            and self.tokens[self.i + 1].kind == "keyword"
            and self.tokens[self.i + 1].text in ("in", "contains")
        ):
            op = "not " + self.tokens[self.i + 1].text
            self.i += 2
        if op is None:
            if isinstance(left, Key):
                return Exists(left)
            raise self.fail("expected a comparison (==, !=, <, <=, >, >=, in, not in, contains)")
        right = self.parse_operand()
        if op in _CONTAINS:
            if not isinstance(left, Key):
                raise QueryError(self.query, start.pos, f"'{op}' needs a key on its left")
            if isinstance(right, Literal) and right.is_list:
                raise QueryError(self.query, right.pos, f"'{op}' takes one value, not a list")
            # ``key contains x`` is ``x in key``: a key holding no list anywhere is refused
            return Compare(right, _CONTAINS[op], left, op_token.pos)
        if not isinstance(left, Key) and not isinstance(right, Key):
            raise QueryError(self.query, start.pos, "a comparison needs a key on one side")
        for side in (left, right):
            listed = isinstance(side, Literal) and side.is_list
            if listed and not (op in _MEMBERSHIP and side is right):
                raise QueryError(self.query, side.pos, "a list can only follow 'in' or 'not in'")
        if op in _MEMBERSHIP and isinstance(right, Literal) and not right.is_list:
            raise QueryError(self.query, right.pos, f"'{op}' {_IN_TAKES}")
        return Compare(left, op, right, op_token.pos)

    def parse_operand(self) -> Any:
        tok = self.tok
        if tok.kind == "name":
            self.i += 1
            return Key(tok.text, tok.pos)
        if tok.kind in ("number", "string", "literal"):
            self.i += 1
            return Literal(tok.value, tok.pos)
        if self.accept("["):
            values: list[Any] = []
            if not self.accept("]"):
                while True:
                    item = self.tok
                    if item.kind not in ("number", "string", "literal"):
                        raise self.fail("expected a number, a string, true, false or none")
                    values.append(item.value)
                    self.i += 1
                    if self.accept("]"):
                        break
                    if not self.accept(","):
                        raise self.fail("expected ',' or ']'")
            return Literal(tuple(values), tok.pos)
        raise self.fail("expected a key, a number, a string or a list")


def parse(query: str) -> Any:
    """The syntax tree of ``query`` (None for an empty query)."""
    if not isinstance(query, str):
        raise TypeError(f"a query is a string, got {type(query).__name__}")
    return _Parser(query).parse()


# -- evaluation ---------------------------------------------------------------------------
def evaluate(tree: Any, frame: Any, query: str) -> Any:
    """A boolean Series over ``frame``'s rows."""
    import pandas as pd

    if tree is None:
        return pd.Series(True, index=frame.index)
    return _Evaluator(frame, query).eval(tree)


class _Evaluator:
    def __init__(self, frame: Any, query: str) -> None:
        self.frame = frame
        self.query = query

    def column(self, key: Key) -> Any:
        if key.name in self.frame.columns:
            return self.frame[key.name]
        close = difflib.get_close_matches(key.name, [str(c) for c in self.frame.columns], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise QueryError(self.query, key.pos, f"no run has the key '{key.name}'{hint}")

    def eval(self, node: Any) -> Any:

        if isinstance(node, BoolOp):
            result = self.eval(node.parts[0])
            for part in node.parts[1:]:
                other = self.eval(part)
                result = (result & other) if node.op == "and" else (result | other)
            return result
        if isinstance(node, Not):
            return ~self.eval(node.part)
        if isinstance(node, Exists):
            return self.column(node.key).notna().astype(bool)
        if isinstance(node, Compare):
            return self.compare(node)
        raise AssertionError(node)  # pragma: no cover

    def compare(self, node: Compare) -> Any:
        import pandas as pd

        op, left, right = node.op, node.left, node.right
        if op in _MEMBERSHIP:
            found = self.member(left, right, op)
            return ~found if op == "not in" else found
        if isinstance(left, Literal):  # 0.1 > key
            left, right = right, left
            op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
        series = self.column(left)
        if isinstance(right, Key):
            other = self.column(right)
            pairs = zip(series.tolist(), other.tolist(), strict=True)
            return pd.Series([_apply(op, a, b) for a, b in pairs], index=series.index, dtype=bool)
        value = right.value
        if value is None and op in ("==", "!="):
            return series.isna() if op == "==" else series.notna()
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (
            numeric
            and pd.api.types.is_numeric_dtype(series)
            and not (pd.api.types.is_bool_dtype(series))
        ):
            result = _FAST[op](series, value)  # missing values: unequal to everything
            return result.fillna(op == "!=").astype(bool)
        return _as_bool(series.map(lambda v: _apply(op, v, value)), missing=op == "!=")

    def member(self, left: Key | Literal, right: Key | Literal, op: str) -> Any:
        """Whether each run's left value is in the list literal, or in that run's own list
        under the right key (a key holding no list anywhere is surely a mistake: refused)."""
        import pandas as pd

        if isinstance(right, Literal):  # the parser put a key on the left
            return _as_bool(self.column(cast(Key, left)).map(lambda v: _member(v, right.value)))
        if isinstance(left, Key):
            lefts = self.column(left).tolist()
        else:
            lefts = [left.value] * len(self.frame.index)  # a frame, or the Reader's view
        cells = self.column(right)
        if not cells.map(_is_list).any():
            raise QueryError(
                self.query, right.pos, f"'{op}' {_IN_TAKES}; no run has a list under '{right.name}'"
            )
        pairs = zip(lefts, cells.tolist(), strict=True)
        found = [_is_list(cell) and _member(v, tuple(cell)) for v, cell in pairs]
        return pd.Series(found, index=cells.index, dtype=bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _as_bool(result: Any, missing: bool = False) -> Any:
    """A plain numpy-bool Series (``map`` on nullable columns leaves NA for missing values)."""
    return result.fillna(missing).astype(bool)


def _member(v: Any, values: tuple[Any, ...]) -> bool:
    return any(_apply("==", v, x) for x in values)


def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and value != value)
        or (type(value).__name__ == "NAType")
    )


def _apply(op: str, a: Any, b: Any) -> bool:
    """One comparison in Python; mismatched values are simply not equal. A missing value equals
    only another missing one (as ``key == none`` does) and is never ordered."""
    if _missing(a) or _missing(b):
        both = _missing(a) and _missing(b)
        return op in ("==", "!=") and both == (op == "==")
    if isinstance(a, bool) != isinstance(b, bool):
        return op == "!="
    try:
        return bool(_OPS[op](a, b))
    except TypeError:
        return op == "!="


_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_FAST = {
    "==": lambda s, v: s == v,
    "!=": lambda s, v: s != v,
    "<": lambda s, v: s < v,
    "<=": lambda s, v: s <= v,
    ">": lambda s, v: s > v,
    ">=": lambda s, v: s >= v,
}

"""A tiny SQL WHERE-clause interpreter over in-memory rows, for the stand-in CRMs.

SugarCRM's ``query`` argument is raw SQL pasted after ``WHERE`` (MySQL rules: ``''`` and ``\\'``
both escape a quote, ``--``/``#`` start comments) and vTiger's query language is close to it.
The stand-ins really run what the connector sends through this interpreter, so a connector
that let ``' OR 1=1 --`` through would match every row here, as it would on the real CRM.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Pred = Callable[[Row], bool]


class SqlSyntaxError(ValueError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<num>\d+(?:\.\d+)?)
    | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,|;|\*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.X | re.S,
)


def _strip_comments(text: str) -> str:
    # a comment start outside string literals ends the statement here (MySQL '-- ' and '#')
    out, i, quote = [], 0, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            if c == quote:
                quote = "" if text[i + 1 : i + 2] != quote else quote
                if quote:
                    out.append(c)
                    i += 1
        elif c in "'\"":
            quote = c
        elif text.startswith("--", i) or c == "#":
            break
        out.append(c)
        i += 1
    return "".join(out)


def tokenize(text: str, *, comments: bool = True) -> list[tuple[str, str]]:
    """Tokens of ``text``; with ``comments`` (MySQL), ``--`` and ``#`` end it."""
    if comments:
        text = _strip_comments(text)
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SqlSyntaxError(f"syntax error near {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        val = m.group(kind)
        if kind == "str":
            q = val[0]
            body = val[1:-1].replace(q + q, q)
            val = re.sub(r"\\(.)", r"\1", body)
        out.append((kind, val))
        pos = m.end()
    return out


def _like(pattern: str) -> re.Pattern[str]:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(rx, re.I | re.S)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], columns: Callable[[str], str], parens: bool):
        self.t = tokens
        self.i = 0
        self.column = columns
        self.parens = parens

    def peek(self, word: str | None = None) -> tuple[str, str] | None:
        if self.i >= len(self.t):
            return None
        tok = self.t[self.i]
        if word is not None and tok[1].upper() != word:
            return None
        return tok

    def take(self, word: str | None = None) -> tuple[str, str]:
        tok = self.peek(word)
        if tok is None:
            got = self.t[self.i][1] if self.i < len(self.t) else "end of query"
            raise SqlSyntaxError(f"expected {word or 'a value'}, found {got!r}")
        self.i += 1
        return tok

    def parse(self) -> Pred:
        pred = self.or_()
        if self.i != len(self.t):
            raise SqlSyntaxError(f"unexpected {self.t[self.i][1]!r}")
        return pred

    def or_(self) -> Pred:
        parts = [self.and_()]
        while self.peek("OR"):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else lambda r: any(p(r) for p in parts)

    def and_(self) -> Pred:
        parts = [self.not_()]
        while self.peek("AND"):
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else lambda r: all(p(r) for p in parts)

    def not_(self) -> Pred:
        if self.peek("NOT"):
            self.take()
            inner = self.not_()
            return lambda r: not inner(r)
        if self.peek("("):
            if not self.parens:
                raise SqlSyntaxError("parentheses are not supported here")
            self.take()
            inner = self.or_()
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> Callable[[Row], Any]:
        kind, val = self.take()
        if kind in ("str", "num"):
            return lambda r: val
        if kind == "word" and val.upper() not in ("AND", "OR", "NOT", "LIKE", "IN", "NULL"):
            col = self.column(val)
            return lambda r: r.get(col)
        raise SqlSyntaxError(f"expected a column or a value, found {val!r}")

    def comparison(self) -> Pred:
        left = self.operand()
        negate = bool(self.peek("NOT")) and bool(self.take())
        if self.peek("LIKE"):
            self.take()
            right = self.operand()
            pred: Pred = lambda r: (  # noqa: E731
                left(r) is not None and bool(_like(str(right(r))).fullmatch(str(left(r))))
            )
        elif self.peek("IN"):
            self.take()
            self.take("(")
            items = [self.operand()]
            while self.peek(","):
                self.take()
                items.append(self.operand())
            self.take(")")
            pred = lambda r: str(left(r)) in {str(i(r)) for i in items}  # noqa: E731
        elif self.peek("IS"):
            self.take()
            neg = bool(self.peek("NOT")) and bool(self.take())
            self.take("NULL")
            pred = lambda r: (left(r) in (None, "")) != neg  # noqa: E731
        else:
            if negate:
                raise SqlSyntaxError("NOT must be followed by LIKE or IN")
            _, op = self.take()
            if op not in ("=", "!=", "<>", "<", ">", "<=", ">="):
                raise SqlSyntaxError(f"expected a comparison, found {op!r}")
            right = self.operand()
            pred = lambda r: _compare(left(r), op, right(r))  # noqa: E731
        return (lambda r: not pred(r)) if negate else pred


def _compare(a: Any, op: str, b: Any) -> bool:
    if a is None or b is None:
        return False
    a, b = str(a), str(b)
    if re.fullmatch(r"\d+(\.\d+)?", a) and re.fullmatch(r"\d+(\.\d+)?", b):
        a, b = float(a), float(b)  # type: ignore[assignment]
    else:
        a, b = a.lower(), b.lower()  # MySQL's default collation ignores case
    return {
        "=": a == b,
        "!=": a != b,
        "<>": a != b,
        "<": a < b,
        ">": a > b,
        "<=": a <= b,
        ">=": a >= b,
    }[op]


def compile_where(
    text: str, column: Callable[[str], str] = lambda c: c, *, parens: bool = True
) -> Pred:
    """A predicate over rows for a WHERE clause; SqlSyntaxError when it is not valid."""
    return compile_tokens(tokenize(text), column, parens=parens)


def compile_tokens(
    tokens: list[tuple[str, str]], column: Callable[[str], str], *, parens: bool = True
) -> Pred:
    if any(k == "op" and v == ";" for k, v in tokens):
        raise SqlSyntaxError("';' inside a condition (a second statement)")
    if not tokens:
        return lambda r: True
    return _Parser(tokens, column, parens).parse()

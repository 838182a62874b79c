"""A small reader of GraphQL queries: enough of the language to answer the AniList queries trace.moe clients send
(operations, variables, aliases, arguments, nested selections, fragments), resolved against plain dicts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadParameterError

_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
    | (?P<spread>\.\.\.)
    | (?P<punct>[!$():=@\[\]{}|&])
    | (?P<block>\"\"\"(?:\\\"\"\"|(?!\"\"\").)*\"\"\")
    | (?P<string>"(?:[^"\\\n\r]|\\.)*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    """,
    re.VERBOSE | re.DOTALL,
)
MAX_QUERY_CHARS = 20_000
MAX_DEPTH = 12  # AniList's own queries nest 4 deep; this bounds the work a crafted query can ask for


class GraphQLSyntaxError(BadParameterError):
    """A query that is not GraphQL."""


@dataclass
class Field:
    """One field of a selection: what the answer calls it (alias or name), its arguments and sub-selection."""

    name: str
    alias: str
    arguments: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] | None = None


class _Parser:
    def __init__(self, text: str, variables: dict[str, Any]):
        if len(text) > MAX_QUERY_CHARS:
            raise GraphQLSyntaxError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise GraphQLSyntaxError(f"Syntax Error: unexpected character {text[pos]!r} at {pos}")
            pos = m.end()
            kind = m.lastgroup or ""
            if kind != "skip":
                self.tokens.append((kind, m.group()))
        self.pos = 0
        self.variables = variables
        self.fragments: dict[str, list[Field]] = {}

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        got_kind, got = self.peek()
        if (value is not None and got != value) or (kind is not None and got_kind != kind) or got_kind == "end":
            wanted = value or kind or "more"
            raise GraphQLSyntaxError(f"Syntax Error: expected {wanted}, found {got or 'the end'}")
        self.pos += 1
        return got

    def skip_balanced(self, opening: str, closing: str) -> None:
        depth = 0
        while True:
            token = self.take()
            depth += token == opening
            depth -= token == closing
            if depth == 0:
                return

    def document(self, operation_name: str | None) -> list[Field]:
        """The selections of the operation asked for (the first, by default); fragments are read wherever they are."""
        operations: list[tuple[str | None, int]] = []
        while self.peek()[0] != "end":
            kind, token = self.peek()
            if token == "fragment":
                self.take()
                name = self.take(kind="name")
                self.take("on")
                self.take(kind="name")
                self._directives()
                start = self.pos
                self.skip_balanced("{", "}")
                self.fragments[name] = []
                operations.append((f"fragment {name}", start))
            elif token == "{":
                operations.append((None, self.pos))
                self.skip_balanced("{", "}")
            elif token in ("query", "mutation", "subscription"):
                self.take()
                op_name = self.take(kind="name") if self.peek()[0] == "name" else None
                if self.peek()[1] == "(":
                    self.skip_balanced("(", ")")  # variable definitions: the values come in `variables`
                self._directives()
                if token != "query":
                    raise BadParameterError(f"only queries are answered, not a {token}")
                operations.append((op_name, self.pos))
                self.skip_balanced("{", "}")
            else:
                raise GraphQLSyntaxError(f"Syntax Error: unexpected {token or kind}")
        for label, start in operations:  # fragments first: operations may spread them
            if label and label.startswith("fragment "):
                self.pos = start
                self.fragments[label[len("fragment ") :]] = self.selection_set(0)
        chosen = [start for label, start in operations if not (label or "").startswith("fragment ")]
        if operation_name is not None:
            chosen = [start for label, start in operations if label == operation_name]
        if not chosen:
            raise GraphQLSyntaxError(
                "the document has no query" + (f" named {operation_name}" if operation_name else "")
            )
        self.pos = chosen[0]
        return self.selection_set(0)

    def _directives(self) -> None:
        while self.peek()[1] == "@":
            self.take()
            self.take(kind="name")
            if self.peek()[1] == "(":
                self.skip_balanced("(", ")")

    def selection_set(self, depth: int) -> list[Field]:
        if depth > MAX_DEPTH:
            raise GraphQLSyntaxError(f"the query nests deeper than {MAX_DEPTH} levels")
        self.take("{")
        selections: list[Field] = []
        while self.peek()[1] != "}":
            if self.peek()[0] == "spread":
                self.take()
                if self.peek()[1] == "on" or self.peek()[1] == "{":  # an inline fragment
                    if self.peek()[1] == "on":
                        self.take()
                        self.take(kind="name")
                    self._directives()
                    selections.extend(self.selection_set(depth + 1))
                else:
                    name = self.take(kind="name")
                    self._directives()
                    selections.extend(self.fragments.get(name, []))
                continue
            alias = name = self.take(kind="name")
            if self.peek()[1] == ":":
                self.take()
                name = self.take(kind="name")
            arguments = self.arguments() if self.peek()[1] == "(" else {}
            self._directives()
            sub = self.selection_set(depth + 1) if self.peek()[1] == "{" else None
            selections.append(Field(name, alias, arguments, sub))
        self.take("}")
        return selections

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        arguments = {}
        while self.peek()[1] != ")":
            name = self.take(kind="name")
            self.take(":")
            arguments[name] = self.value()
        self.take(")")
        return arguments

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise GraphQLSyntaxError(f"an argument nests deeper than {MAX_DEPTH} levels")
        kind, token = self.peek()
        if token == "$":
            self.take()
            return self.variables.get(self.take(kind="name"))
        if token == "[":
            self.take()
            items = []
            while self.peek()[1] != "]":
                items.append(self.value(depth + 1))
            self.take("]")
            return items
        if token == "{":
            self.take()
            obj = {}
            while self.peek()[1] != "}":
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value(depth + 1)
            self.take("}")
            return obj
        self.take()
        if kind == "number":
            if len(token) > 40:  # no id or page number is this long (and int() refuses 4300 digits)
                raise GraphQLSyntaxError("a number in the query is too long")
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        if kind == "block":
            return token[3:-3]
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(token, token)  # else an enum value
        raise GraphQLSyntaxError(f"Syntax Error: unexpected {token}")


def parse_query(text: str, variables: dict[str, Any] | None = None, operation_name: str | None = None) -> list[Field]:
    """The root selections of a GraphQL query, with variables substituted into the arguments."""
    return _Parser(text, variables or {}).document(operation_name)


def select(value: Any, selections: list[Field] | None) -> Any:
    """The part of a value that a selection asks for; what the value lacks is null, never an error."""
    if selections is None:
        return value if not isinstance(value, dict) else None  # an object asked for without fields
    if isinstance(value, list):
        return [select(item, selections) for item in value]
    if not isinstance(value, dict):
        return None
    return {f.alias: select(value.get(f.name), f.selections) for f in selections}

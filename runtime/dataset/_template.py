"""Where a row's text comes from: one column, or a template over several.

A template names columns in braces and keeps everything else as written: ``"{title}\\n{text}"``,
``"title: {title|none} | text: {text}"`` (EmbeddingGemma's document format). After ``|`` comes the
text put in where the value is null, missing or empty; a field without one makes a row whose value
is null or missing a bad row (an empty value stays empty). ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True)
class _Field:
    column: str
    default: str | None  # for a null, missing or empty value; None: null or missing is a bad row


@dataclass(frozen=True)
class TextSource:
    """The column holding each row's text, or the template composing it from several columns."""

    pieces: tuple[str | _Field, ...]
    template: str | None = None  # as given; None: one column, whose value is the text

    @classmethod
    def of(cls, text_column: str | TextSource = "text", text_template: str | None = None) -> TextSource:
        if isinstance(text_column, TextSource):
            return text_column
        if text_template is None:
            if not isinstance(text_column, str) or not text_column:
                raise ValueError(f"text_column must be a column name, got {text_column!r}")
            return cls((_Field(text_column, None),))
        if not isinstance(text_template, str):
            raise ValueError(f"text_template must be a string such as '{{title}}\\n{{text}}', got {text_template!r}")
        return cls(_parse(text_template), text_template)

    @functools.cached_property
    def _column(self) -> str:
        first = self.pieces[0]
        assert isinstance(first, _Field)
        return first.column

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        """The columns read, each once, in the order the text names them."""
        return tuple(dict.fromkeys(p.column for p in self.pieces if isinstance(p, _Field)))

    def _label(self, column: str) -> str:
        return "text" if self.template is None else f"column {column!r}"

    def from_mapping(self, row: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The text of a row given as a mapping (a JSON object, a CSV record), or why there is none."""
        if self.template is None:  # one column holding a string: most rows of most jobs, read directly
            text = row.get(self._column)
            if isinstance(text, str):
                return text, None

        def value(column: str) -> tuple[str | None, str | None]:
            v = row.get(column)
            if v is None or isinstance(v, str):
                return v, None
            return None, f"{self._label(column)} is {type(v).__name__} ({v!r:.40}), expected a string"

        def null(column: str) -> str:
            if column not in row:
                return f"missing column {column!r} (keys: {sorted(row)[:8]})"
            return f"{self._label(column)} is null"

        return self._compose(value, null)

    def from_table(self, table: pa.Table) -> tuple[list[str | None], list[str | None]]:
        """Each row's text and why it cannot be embedded (None where it can), from an Arrow table
        holding the columns."""
        from ._readers import arrow_texts

        if self.template is None:
            return arrow_texts(table.column(self.columns[0]))
        read = {c: arrow_texts(table.column(c), self._label(c)) for c in self.columns}
        nulls = {c: table.column(c).is_null().to_pylist() for c in self.columns}
        texts: list[str | None] = []
        bad: list[str | None] = []
        for i in range(table.num_rows):
            text, why = self._compose(
                lambda c: (read[c][0][i], None if nulls[c][i] else read[c][1][i]),  # noqa: B023 - called at once
                lambda c: f"{self._label(c)} is null",
            )
            texts.append(text)
            bad.append(why)
        return texts, bad

    def _compose(
        self, value: Callable[[str], tuple[str | None, str | None]], null: Callable[[str], str]
    ) -> tuple[str | None, str | None]:
        """The text from each column's ``value`` (its text, or None where it is null or missing; or
        why it is no text), or why there is none (``null(column)`` for a null without a default)."""
        out: list[str] = []
        for p in self.pieces:
            if isinstance(p, str):
                out.append(p)
                continue
            text, why = value(p.column)
            if why is not None:
                return None, why
            if text is None and p.default is None:
                return None, null(p.column)
            out.append(p.default if not text and p.default is not None else text or "")
        return "".join(out), None

    def sizes(self, table: pa.Table) -> np.ndarray:
        """Each row's text size, for cutting a table into slices (the columns' UTF-8 bytes)."""
        from ._readers import text_sizes

        total = np.zeros(table.num_rows, np.int64)
        for c in self.columns:
            total += text_sizes(table.column(c))
        return total

    def missing(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """The text's columns that are not among ``names``."""
        return [c for c in self.columns if c not in names]


def one_of_flags(text_column: str | None, text_template: str | None) -> None:
    """The command line's ``--text-column`` and ``--text-template``: at most one given (the
    default column cannot be told from one given, so the commands check what was typed)."""
    if text_column is not None and text_template is not None:
        raise ValueError(f"give --text-column ({text_column!r}) or --text-template ({text_template!r}), not both: a "
                         "template names its columns itself")  # fmt: skip


def _parse(template: str) -> tuple[str | _Field, ...]:
    pieces: list[str | _Field] = []
    literal: list[str] = []
    at = 0
    for m in _TOKEN.finditer(template):
        literal.append(template[at:m.start()])
        at = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if token in ("{", "}"):
            raise ValueError(f"text_template {template!r} has a lone {token!r} at character {m.start()}; write "
                             f"{token * 2!r} for a literal brace")  # fmt: skip
        name, bar, default = m.group(1).partition("|")
        if not name:
            raise ValueError(f"text_template {template!r} has an empty field {token!r} at character {m.start()}; "
                             "expected a column name, as in {text} or {title|none}")  # fmt: skip
        if "".join(literal):
            pieces.append("".join(literal))
        literal = []
        pieces.append(_Field(name, default if bar else None))
    literal.append(template[at:])
    if "".join(literal):
        pieces.append("".join(literal))
    if not any(isinstance(p, _Field) for p in pieces):
        raise ValueError(f"text_template {template!r} names no column; expected fields such as {{title}} and {{text}}")
    return tuple(pieces)

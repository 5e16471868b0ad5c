"""The rows a corpus job embeds: those where a SQL condition on their columns holds (``where``).

The condition is a SQL expression, as a ``WHERE`` clause holds one (``language LIKE 'eng%'``,
``length(text) > 200 AND status = 'ok'``, ``url IN (SELECT url FROM 'keep.parquet')``), parsed and
evaluated by DuckDB on each slice of rows the job reads (Arrow tables, handed over without a copy).
The names it uses are the input's columns, read for it (and written only where kept); the text
column's name is the text the job embeds (a page's text, not its HTML), and the id column's the
row's id. A row is embedded where the condition is true; where it is false or null (SQL's ``WHERE``)
the row is left out of the output, but for a bad row (its text unreadable) whose condition is null
for want of it: that row stays a bad row, so that ``on_error`` reports it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._sources import InputError

_VIEW = "rows"  # the name the slice has in the condition's query
_local = threading.local()  # each thread's DuckDB connection (a cursor of one database a process)
_lock = threading.Lock()
_database: Any = None


def _connection() -> Any:
    """This thread's DuckDB connection: one thread each (the model's threads are the job's)."""
    global _database
    con = getattr(_local, "con", None)
    if con is None:
        try:
            import duckdb
        except ImportError:
            raise InputError("where (--where) needs DuckDB: pip install 'embedrt[dataset]'") from None
        with _lock:
            if _database is None:
                _database = duckdb.connect(config={"threads": 1})
            con = _local.con = _database.cursor()
    return con


class Condition:
    """A checked SQL condition: its text and the column names it uses (``columns``), in order."""

    def __init__(self, sql: str) -> None:
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError(f"where takes a SQL condition on the rows' columns (language LIKE 'eng%'); got {sql!r}")
        self.sql = sql
        self.columns = _columns(sql)
        try:  # its functions and its value's type, before any row is read: columns of no type yet
            self._holds({c: pa.nulls(0) for c in self.columns}, 0)
        except InputError as e:
            raise ValueError(str(e)) from None

    def __reduce__(self) -> tuple[Any, ...]:  # sent to Ray's actors as its text
        return Condition, (self.sql,)

    def kept(self, table: pa.Table, names: dict[str, str], bad: pa.Array | None) -> pa.Array:
        """Which rows of ``table`` the condition keeps (a boolean array, no nulls); ``names``: the
        table's column for each name the condition uses that has another (the text's, the id's);
        ``bad``: the rows' reasons for being bad rows (null: good)."""
        holds = self._holds({c: table.column(names.get(c, c)) for c in self.columns}, table.num_rows)
        if bad is not None and bad.null_count < len(bad):  # a bad row whose condition wants its text stays one
            return pc.or_(pc.fill_null(holds, False), pc.and_(pc.is_valid(bad), pc.is_null(holds)))
        return pc.fill_null(holds, False)


    def _holds(self, columns: dict[str, Any], rows: int) -> pa.Array:
        """The condition's value for each of ``rows`` rows, ``columns`` by the condition's names (a
        condition that names none: a column of nulls, so that DuckDB counts the rows)."""
        con = _connection()
        con.register(_VIEW, pa.table(columns or {"_": pa.nulls(rows)}))
        try:
            got = con.sql(f"SELECT ({self.sql}\n) FROM {_VIEW}").to_arrow_table()  # a line: a -- comment ends
        except Exception as e:  # duckdb.Error: a type that does not fit, a function that fails
            text = " (a CSV file's columns, and a JSONL key of values of several types, are text: cast them, as in " \
                "TRY_CAST(n AS INTEGER) > 3)" if "VARCHAR" in str(e) else ""
            raise InputError(f"where {self.sql!r}: {type(e).__name__}: {e}{text}") from None
        finally:
            con.unregister(_VIEW)
        holds = got.column(0)
        if not pa.types.is_boolean(holds.type) and not pa.types.is_null(holds.type):
            raise InputError(f"where {self.sql!r} gives values of type {holds.type}, not true or false: a condition "
                             "compares them (language = 'eng')")  # fmt: skip
        return holds.combine_chunks().cast(pa.bool_())


def _columns(sql: str) -> tuple[str, ...]:
    """The column names ``sql`` uses (not those of its subqueries' own tables), by DuckDB's parse of
    it; a text that is not one SQL expression is refused, naming DuckDB's complaint."""
    statement = f"SELECT * FROM {_VIEW} WHERE {sql}"
    parsed = json.loads(_connection().execute("SELECT json_serialize_sql(?)", [statement]).fetchall()[0][0])
    if parsed.get("error"):
        raise ValueError(f"where {sql!r} is not a SQL condition: {parsed.get('error_message')}")
    statements = parsed.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    after = ("group_expressions", "group_sets", "having", "qualify", "sample", "modifiers")  # ORDER BY, LIMIT ...
    if not node.get("where_clause") or any(node.get(c) for c in after):
        raise ValueError(f"where {sql!r} is not one SQL condition: a WHERE clause's expression, nothing after it")
    return tuple(dict.fromkeys(_refs(node["where_clause"])))


def _refs(node: Any) -> Iterator[str]:
    """The column names an expression's parse uses, outside its subqueries (``x IN (SELECT ...)``:
    ``x``, the subquery's ``child``)."""
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF":  # a.b: column b of the rows, or field b of a struct column a
            names = node["column_names"]
            yield names[1] if len(names) > 1 and names[0] == _VIEW else names[0]
        else:
            for key, value in node.items():
                if not (node.get("class") == "SUBQUERY" and key == "subquery"):
                    yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)

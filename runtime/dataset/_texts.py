"""Every text of a file with columns, in file order, for ``embedrt encode`` (all of it in memory:
for corpora use ``embed_dataset``). The same readers as the corpus job: a bad row is an error
naming its file, line (or Parquet row) and why."""

from __future__ import annotations

from pathlib import Path

from ._batch import bad_row, text_source
from ._readers import BAD, TEXT, read_part
from ._sources import InputError, InputFormat, Plan, plan_input
from ._storage import release
from ._template import TextSource

_ROWS_PER_PART = 65536


def read_texts(path: str | Path, text_column: str = "text", text_template: str | None = None,
               csv_delimiter: str | None = None) -> list[str]:  # fmt: skip
    """The ``text_column`` of a .jsonl / .csv / .tsv / .parquet file (or .txt lines), or each row's
    ``text_template`` (as ``embed_dataset`` takes it), every row, in order."""
    source = text_source(text_column, text_template)
    plan = plan_input(path, _ROWS_PER_PART, text=source, id_column=None, keep_columns=(), delimiter=csv_delimiter)
    try:
        return _texts(plan, source)
    finally:
        release()  # a compressed file's reader, kept between parts


def _texts(plan: Plan, source: TextSource) -> list[str]:
    texts: list[str] = []
    for part in plan.parts:
        table = read_part(plan, part, source, None, ())
        reasons = table.column(BAD).to_pylist()
        bad = next((i for i, r in enumerate(reasons) if r is not None), None)
        if bad is not None:
            column = (
                "" if plan.format is InputFormat.TXT
                else f" (text template {source.template!r})" if source.template is not None
                else f" (text column {source.columns[0]!r})"
            )  # fmt: skip
            raise InputError(
                f"bad row in {bad_row(table, bad, reasons[bad], None).describe()}{column}. Fix the input, or "
                f"embed it with `embedrt embed-dataset`, whose --on-error skip|null passes over such rows and "
                f"records them"
            )
        texts.extend(table.column(TEXT).to_pylist())
    return texts

"""``embed_dataset``: a whole corpus to a Parquet dataset of ids and vectors, streaming and resumable."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from .. import __version__
from .._bundle import load_manifest
from .._cache import JOB_CACHE_MB, check_cache_mb
from .._chunking import CUTS
from .._embedder import Embedder
from .._lines import check_delimiter
from .._objects import is_uri
from .._preferred import check_device_streams, pin_setting
from .._progress import progress_bar
from .._reranker import Reranker
from .._session import check_precision_hint
from .._sparse_encoder import SparseEncoder
from .._types import AUTO, BundleKind, EmbeddingPrecision, check_int, parse
from . import _readers
from . import _scan_record as scan_record
from . import _storage as storage
from ._as_text import asked, paged
from ._batch import (
    CHUNK_COLUMNS,
    CHUNK_PAGE,
    CHUNK_TEXT,
    BatchResult,
    EmbedBatch,
    Model,
    OnError,
    bundle_digest,
    chunker,
    output_settings,
    sparse_settings,
    text_source,
)
from ._output import SCHEMA, OutputFolder, writer_options
from ._readers import LEFT_OUT_KEY
from ._scan_record import ScanRecord
from ._scan_workers import ProcessScans
from ._score import SCORE, ScoreBatch, check_job_kind, pair_settings, score_type
from ._sources import ALL_COLUMNS, DOCUMENTS_PER_PART, InputError, InputFormat, PartSpec, Plan, plan_input
from ._template import TextSource
from ._where import Condition

Log = Callable[[str], None]
MANIFEST_FILES = 1000  # the input files the manifest names (``_input_record``)


class Backend(str, Enum):
    LOCAL = "local"
    RAY = "ray"


@dataclass
class RayOptions:
    """Where and how wide the Ray backend runs (see ``embedrt.dataset._ray``)."""

    address: str | None = None  # None: an existing cluster if RAY_ADDRESS is set, else a local one
    num_actors: int | None = None  # default: the cluster's CPUs, less one, over cpus_per_actor
    cpus_per_actor: int = 1
    num_gpus_per_actor: float = 0.0
    # restarts of each actor after its process dies (out of memory, a crash, a lost node); the part it
    # held runs again. A part that kills its actor every time fails the job after this many.
    max_restarts: int = 3


@dataclass
class DatasetSummary:
    """What a job did. ``str()`` is the one-line summary the CLI prints."""

    output: str
    rows: int  # input rows
    written: int  # rows in the output (rows less skipped bad rows; with chunking, a row per window)
    bad_rows: int
    parts: int
    parts_resumed: int  # finished by an earlier run, kept
    seconds: float
    rows_embedded: int  # by this run
    tokens: int  # by this run
    bad_examples: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0  # texts cut to the model's max_seq_length (none with chunking)
    chunked: bool = False  # a row per window of each text (chunk_tokens)
    repeats: int = 0  # output rows (texts, or windows) embedded already: earlier in their slice, or held by the cache
    dry_run: bool = False  # ``dry_run=True``: what a run would do, with nothing embedded or written
    parts_moved: int = 0  # of ``parts_resumed``: kept under another number (a file added or removed before theirs)
    parts_changed: int = 0  # finished by an earlier run, made from rows that changed: computed again
    rows_to_embed: int = 0  # input rows of the parts this run had (a dry run: would have) to do
    left_out: int = 0  # input rows the ``where`` condition left out of the output

    @property
    def texts_per_second(self) -> float:
        return self.rows_embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every field and the rates, as ``--json`` prints them."""
        return {**asdict(self), "texts_per_second": self.texts_per_second, "tokens_per_second": self.tokens_per_second}

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        if self.dry_run:
            moved = f", {self.parts_moved} of them moved to new numbers" if self.parts_moved else ""
            n = self.parts_changed
            changed = f"; {n} finished part{'s' * (n != 1)} made from rows that changed, computed again" if n else ""
            return (
                f"dry run: {self.rows} input rows in {self.parts} parts; {self.parts_resumed} parts finished by an "
                f"earlier run kept ({self.written} rows){moved}{changed}; a run would embed {self.rows_to_embed} rows "
                f"in {self.parts - self.parts_resumed} parts into {self.output}; nothing was written"
            )
        resumed = f" ({self.parts_resumed} of {self.parts} parts kept from an earlier run)" if self.parts_resumed else ""
        written = f"{self.written} chunks of {self.rows} rows" if self.chunked else f"{self.written} rows"
        cut = f"; {self.truncated} texts longer than the model's window cut to it" if self.truncated else ""
        cut += f"; {self.repeats} repeated {'windows' if self.chunked else 'texts'} embedded once" if self.repeats else ""
        cut += f"; {self.left_out} rows left out by the where condition" if self.left_out else ""
        return (
            f"{written} written to {self.output}{resumed}; bad rows {self.bad_rows}{cut}; "
            f"this run: {self.rows_embedded} texts in {self.seconds:.1f} s, "
            f"{self.texts_per_second:.1f} texts/s, {self.tokens_per_second:.0f} tokens/s"
        )


def embed_dataset(
    input: str | Path | list[str | Path],
    output: str | Path,
    model: str | Path | Model,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    keep_columns: str | list[str] | tuple[str, ...] = (),
    on_error: str | OnError = OnError.FAIL,
    batch_size: int = 32,
    rows_per_part: int | None = None,
    normalize: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    overwrite: bool = False,
    device: str = "auto",
    threads: int | None = None,
    precision_hint: str | None = None,
    streams: int | str = "auto",
    backend: str | Backend = Backend.LOCAL,
    ray: RayOptions | None = None,
    progress: bool = True,
    progress_every: float = 60.0,
    log: Log | None = None,
    precision: str = "float32",
    truncate_dim: int | None = None,
    ranges: np.ndarray | None = None,
    chunk_tokens: int | str | None = None,
    chunk_overlap: int = 0,
    chunk_text: bool = False,
    max_active_dims: int | None = None,
    repeat_cache_mb: float = JOB_CACHE_MB,
    text_template: str | None = None,
    query_column: str | None = None,
    where: str | None = None,
    csv_delimiter: str | None = None,
    dry_run: bool = False,
    rescan: bool = False,
    content_defined_parts: bool = False,
    documents: bool = False,
    html_text: bool = False,
    pdf_text: bool = False,
    docx_text: bool = False,
    pptx_text: bool = False,
    epub_text: bool = False,
    odf_text: bool = False,
    xlsx_text: bool = False,
    eml_text: bool = False,
    rtf_text: bool = False,
    image_text: bool = False,
    xml_text: bool = False,
    wiki_text: bool = False,
    ocr: bool = False,
    attachment_text: bool = False,
    archives: bool = False,
    xml_record: str | Sequence[str] | None = None,
) -> DatasetSummary:
    """Embed every row of ``input`` into the Parquet dataset folder ``output``.

    ``model``: a bundle folder, or an ``Embedder``, ``SparseEncoder`` or ``Reranker`` already loaded
    (local backend). A reranker bundle scores each row's pair instead, ``query_column`` its first
    text and the row's text its second, into a ``score`` column where an embedding job writes its
    vectors (float32; a fixed-size list for a model of several labels), after the model's own
    activation, as ``CrossEncoder.predict`` gives it (``_score``). A sparse (SPLADE) bundle's ``embedding`` column is a struct of ``indices`` (token ids,
    ascending) and ``values`` (their weights); ``max_active_dims`` keeps each vector's largest
    weights only, and the dense vectors' options (``normalize``, ``precision``, ``truncate_dim``)
    are refused.
    ``input``: a ``.txt`` (one text a line), ``.jsonl``, ``.csv``/``.tsv``, ``.parquet`` or Arrow IPC
    (``.arrow``, ``.feather``: a saved Hugging Face dataset's shards) file, or an ``.mbox`` mailbox
    (a row per message, read as ``eml_text`` reads one, into the columns ``_mbox.COLUMNS``; a file
    without a suffix that begins as a mailbox does too, as a mail client's folders are named), or a
    WARC web archive (``.warc.gz``: a row per crawled page of HTML or plain text, HTML read as its
    visible text; Common Crawl's WET files, ``.warc.wet.gz``, a row per page's text; into the columns
    ``_warc.COLUMNS``: ``url``, ``date``, ``content_type`` ...), a folder of them, or a glob. ``documents``: each file of ``input`` (a folder's files, whatever their
    names, but hidden ones; a glob's matches) is one text instead, a row of the columns ``path`` (its
    path under the input folder, or under a glob's folder) and ``text`` (its content, UTF-8), named
    by its path (the default ``id_column``): a folder of Markdown, HTML or text documents, with
    ``chunk_tokens`` to embed them whole in windows; a file that is not UTF-8 text is a bad row.
    ``html_text``: documents named ``*.html``, ``*.htm`` or ``*.xhtml`` are read as their visible
    text (title, then body; no scripts, styles or markup; paragraphs as blank lines); with rows
    (``.txt``, ``.jsonl``, ``.csv``/``.tsv``, ``.parquet``, Arrow: a crawl's pages; XML records), each row's text (its
    column, or ``text_template``'s composition) is an HTML page, read so (a kept column stays as
    it is in the input). ``pdf_text``:
    documents named ``*.pdf`` are read as their text (PDFium, the ``pdf`` extra), pages separated by
    a form feed on a line of its own (a window's page is its ``chunk_page``); a PDF without a text
    layer (scanned) or that needs a password is a bad row. ``docx_text``: documents named ``*.docx``
    or ``*.doc`` (Word 97-2003's, through olefile; ``*.docm`` and the templates too) are read as their text (paragraphs a blank line apart, table cells a tab apart; no headers,
    footers, comments or deleted revisions; footnotes and endnotes after the body). ``pptx_text``: documents named ``*.pptx`` or ``*.ppt`` (``*.pptm`` and shows too)
    (PowerPoint 97-2003's, through olefile) are read as their slides' text (charts as their titles and data) and speaker notes, slides separated as a PDF's pages are (a window's slide is
    its ``chunk_page``). ``epub_text``: documents named ``*.epub`` are read as their title and
    chapters' visible text, in reading order; a book with DRM is a bad row. ``odf_text``: documents
    named ``*.odt``, ``*.odp`` or ``*.ods`` (OpenDocument text, presentations and spreadsheets) are
    read as their text, pages (as last laid out), slides or sheets separated as a PDF's pages are.
    ``xlsx_text``: documents named ``*.xlsx``, ``*.xlsm`` or ``*.xls`` (Excel workbooks; Excel
    97-2003's through xlrd) are read as their
    sheets' text (each sheet's name, then its rows a line each, cells a tab apart, values as Excel
    shows them, dates and times in ISO 8601), sheets separated as a PDF's pages are. ``eml_text``:
    documents named ``*.eml`` or ``*.msg`` (e-mail messages; Outlook's through olefile) are read as their subject, sender, recipients and
    date a line each, then their body's text (a message of HTML only: its visible text), their
    attachments' names and the messages forwarded in them. ``rtf_text``: documents named ``*.rtf``
    are read as their text, as ``docx_text`` reads a Word document. ``image_text``: documents named
    ``*.png``, ``*.jpg``/``*.jpeg``, ``*.tif``/``*.tiff``, ``*.bmp``, ``*.webp`` or ``*.gif`` are read
    by OCR (RapidOCR, the ``ocr`` extra), a TIFF's pages separated as a PDF's are. ``xml_text``:
    documents named ``*.xml``, ``*.nxml`` or ``*.dbk`` are read as their text, not their markup
    (paragraphs a blank line apart, table cells a tab apart), without what JATS articles (PubMed
    Central's), TEI, DocBook and RSS/Atom feeds hold apart from it (an article's metadata but its
    title, abstract and keywords; its reference list). ``ocr`` (with
    ``pdf_text``): a PDF's pages without text (scanned) are read by OCR (RapidOCR, the ``ocr`` extra).
    ``attachment_text`` (with e-mail: ``eml_text`` documents, or a mailbox): each message's
    attachments of the kinds asked for (``pdf_text``, ``docx_text`` ...) are read, their text after
    the message's, each under a line ``Attachment: NAME``. ``archives`` (with ``documents``): a zip
    or tar archive among the documents (or given as ``input``; ``.zip``, ``.tar``, ``.tar.gz``,
    ``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.tar.zst``) is read as a folder of them, each file in it a
    document whose path is the archive's, then its own in the archive (``export.zip/docs/a.pdf``;
    an archive given as ``input``: its own); without it an archive is a bad row. With
    ``attachment_text``, the files in archives attached to messages are read too, each under a line
    ``File: NAME`` after its archive's ``Attachment:`` line. ``xml_record`` (an element's name, or several:
    a list or a comma-separated string): an ``.xml`` ``input`` is read a row per such element, each
    found where a line begins with its opening tag (PubMed's baseline files: ``"PubmedArticle"``);
    the column ``text`` is the record read as ``xml_text`` reads a document (a PubMed article: its
    title, abstract and keywords), and any other column named (``id_column``, ``keep_columns``,
    ``text_template``) is the record element's attribute of that name, else the text of its first
    element of that name (``"PMID"``), null where it has neither. ``wiki_text``: wikitext (MediaWiki's
    markup) is read as the text a reader of the page sees (paragraphs, lists, headings, tables, links'
    text; no templates, references, files, categories, or sections such as "References" and "External
    links"): documents named ``*.wiki``, ``*.mediawiki`` or ``*.wikitext``; without ``documents``, each
    row's text; an ``.xml`` ``input`` is a MediaWiki export (Wikipedia's ``pages-articles`` dumps,
    ``Special:Export``), read a row per article (``xml_record`` ``"page"``, implied): the pages of the
    main namespace that are not redirects, each row's ``text`` its title and its last revision's text,
    its columns as ``xml_record`` reads them (``id``: the page's, ``title``, ``timestamp``) and ``url``
    (the page's address, from the dump's ``<base>``).
    Rows are cut into parts of ``rows_per_part`` (default 10,000; documents: 100 on average, cut
    by their paths' hashes, so that a document added or removed recomputes its part only). Files of
    fewer rows share parts: a run of them is cut after a file whose name and content hash hits, up
    to ``rows_per_part`` rows a part, so that a folder of thousands of small files makes parts of
    several files each and a file added, removed or edited recomputes its own part only (an
    ``output`` begun by an embedrt that made a part of each file goes on so). Each part becomes one
    Parquet file (``id``, the ``keep_columns``, ``embedding`` as a fixed-size list of float32),
    written whole. A part is read, embedded and written a slice of about 4 million characters at a
    time (most parts: one slice), so memory grows neither with the corpus nor with its texts'
    length. Running the same call again after a crash or a kill continues where it stopped: finished
    parts are kept, and the result equals an uninterrupted run (where texts repeat across parts, to
    float rounding: the resumed run's ``repeat_cache_mb`` cache starts empty). An edited input keeps
    the parts whose rows are unchanged; a file added or removed among the others moves the later
    files' finished parts to their new numbers (their row-number ids shifted). An ``output`` made
    from another input, model or options is refused unless ``overwrite``. A run claims ``output``
    while it works (a lock; a lease on object storage): another run on it meanwhile is refused with
    ``OutputInUseError``, naming this one.

    ``text_column``: the column holding the texts (not for ``.txt``). ``text_template`` makes each
    row's text from several columns instead: ``"{title}\n{text}"``, or ``"title: {title|none} |
    text: {text}"`` where after ``|`` comes the text for a null, missing or empty value (without one,
    a null or missing value makes the row bad; an empty one stays empty); ``{{`` and ``}}`` are
    literal braces. Windows' ``chunk_start`` and ``chunk_end`` count in the composed text.

    ``csv_delimiter``: the field delimiter of ``.csv`` / ``.tsv`` input (default ``,`` and tab), one
    character: ``";"`` as spreadsheets save CSV in locales whose decimal mark is the comma.

    ``id_column``: the column whose values name each row (default: the row number across the input's
    files in sorted order, from 0). ``on_error``: ``"fail"`` (stop at the first bad row, naming it),
    ``"skip"`` (leave it out) or ``"null"`` (keep it with a null embedding); bad rows are listed in
    ``output/_bad_rows.jsonl`` and counted in ``output/_manifest.json``.

    ``where``: embed only the rows where this SQL condition on their columns holds (DuckDB's SQL, as
    a ``WHERE`` clause holds it: ``"language LIKE 'eng%' AND length(text) > 200"``); the others are
    left out of the output and counted (``left_out``). The text column's name is the text embedded
    (a page's text, not its HTML), the id column's the row's id; other columns it names are read for
    it and written only if kept. A bad row whose condition is null for want of its text stays a bad
    row (``_where``).

    ``precision`` (``float32``, ``float16``, ``int8``, ``uint8``, ``binary``, ``ubinary``) and ``truncate_dim``
    shape the ``embedding`` column as ``embedrt.quantize_embeddings`` does; int8/uint8 need
    ``ranges`` (shape ``(2, dim)``, from ``embedrt.quantization_ranges`` on a sample), so that every
    part is on one scale.

    Texts longer than the model's window are cut to it, as sentence-transformers does (the summary
    and the manifest count them). ``chunk_tokens`` (an integer up to the model's ``max_seq_length``,
    or ``"max"`` for it) embeds them whole instead: each text is cut into windows of at most that
    many model inputs (special tokens and prompt included), consecutive windows sharing
    ``chunk_overlap`` tokens and ending at a paragraph, a sentence, a line or a word where they can
    (the best break in their second half), and the output holds a row per
    window with ``chunk`` (its place in the text, from 0), ``chunk_start`` and ``chunk_end``
    (``text[chunk_start:chunk_end]`` is what it covers), with ``pdf_text``, ``pptx_text``,
    ``odf_text`` or ``xlsx_text`` ``chunk_page`` (the page, slide or sheet the window begins on, from 1) and, with ``chunk_text``, that text.

    A text repeated in a slice is embedded once. ``repeat_cache_mb`` (default 64; 0: none) keeps the
    output rows of the texts embedded last, so that a text met again in a later slice or part is not
    embedded again (least recently used out first; per actor on Ray); with chunking it holds windows,
    keyed by their tokens, so that a document met again takes its windows' vectors; with a reranker
    it holds the scores of pairs. The summary and the manifest count both kinds of repeats (with
    chunking, in windows).

    ``dry_run``: plan the input and read ``output`` as a run would, with its refusals, and return
    what it would do (``DatasetSummary.dry_run``: the parts it would keep, move and compute, the rows
    to embed) without loading the model, writing, moving or deleting anything, or claiming ``output``.

    ``content_defined_parts``: a text file's parts (JSONL, CSV, TSV, txt) end after rows chosen by
    their content, ``rows_per_part`` rows on average (at least a quarter, at most four times that),
    instead of every ``rows_per_part`` rows, so that rows deleted or inserted inside a file change
    the parts around them only: the parts after them hold the same rows, at other row numbers, and a
    resume moves them (as for a file added before others) instead of computing them again. For an
    export rewritten in place whose rows come and go anywhere; part of what a continued run must
    match.

    ``rescan``: read and hash every input file again. By default planning keeps what it found in each
    file in ``output/_input_scan.arrow`` and does not read a file again whose size and time stamps
    are unchanged since (locally: size, modification and inode change time, inode; on object
    storage: size and time stamp), so that a resume or a run over a grown corpus reads only the new
    or changed files.

    ``progress``: a bar of the rows on stderr, or, where stderr is no terminal (a log file, a
    batch system), a line every ``progress_every`` seconds (rows, rate, ETA) and one at the end.

    ``device``, ``threads``, ``precision_hint`` and ``streams`` load the model as ``Embedder`` takes
    them (per actor on Ray). ``streams="auto"`` (the default) runs one batch per thread at once on
    the CPU provider, each on one thread (a job's batches always queue; each holds its own run's
    buffers, so peak memory grows with the threads), and on OpenVINO in bf16 (its throughput
    mode), one batch elsewhere; ``streams=1`` runs each batch on every thread. A ``precision_hint`` is part of what a
    continued run must match (it changes the vectors); the others may change between runs.
    """
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    if rows_per_part is None:
        rows_per_part = DOCUMENTS_PER_PART if documents else 10_000
    if documents and id_column is None:
        id_column = "path"
    if isinstance(progress_every, bool) or not isinstance(progress_every, int | float) or not progress_every >= 0:
        raise ValueError(f"progress_every must be a number of seconds >= 0, got {progress_every!r}")
    as_text = asked(html_text=html_text, pdf_text=pdf_text, docx_text=docx_text, pptx_text=pptx_text,
                    epub_text=epub_text, odf_text=odf_text, xlsx_text=xlsx_text, eml_text=eml_text, rtf_text=rtf_text,
                    image_text=image_text, xml_text=xml_text, wiki_text=wiki_text)
    job = JobSettings.checked(text_column, id_column, keep_columns, on_error, batch_size, rows_per_part, normalize,
                              prompt_name, prompt, precision=precision, truncate_dim=truncate_dim, ranges=ranges,
                              chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, chunk_text=chunk_text,
                              max_active_dims=max_active_dims, repeat_cache_mb=repeat_cache_mb,
                              text_template=text_template, query_column=query_column,
                              chunk_pages=paged(as_text) and chunk_tokens is not None, where=where)  # fmt: skip
    check_delimiter(csv_delimiter)
    which = parse(Backend, backend, "backend")
    if which is Backend.RAY:
        from ._ray import check_options, ray_module

        ray_module()  # a missing extra or a bad option fails before the input is scanned
        check_options(ray or RayOptions())
    if isinstance(model, Embedder | SparseEncoder | Reranker):
        bundle, hint = model.path, model.precision_hint
    else:  # bad model options fail before the input is scanned, on either backend
        where, _ = check_device_streams(device, streams)
        model, choice = pin_setting(model, where, precision_hint)  # every part (every Ray actor) runs one setting
        bundle, device, precision_hint = choice.path, choice.device.value, choice.precision_hint
        hint = check_precision_hint(choice.device, precision_hint)
        if where == AUTO:
            say(f"model: {choice.why}")
    bundle_hash, dim, window, kind = _bundle_identity(bundle, prompt_name, prompt, job.query_column)
    job = job.with_window(window)
    sparse, pairs = kind is BundleKind.SPARSE, kind is BundleKind.RERANKER
    if pairs:
        pair_settings(job.normalize, job.precision, job.truncate_dim, job.ranges, job.chunk_tokens, job.max_active_dims)
    else:
        sparse_settings(sparse, job.normalize, job.precision, job.truncate_dim, job.ranges, job.max_active_dims)
    embedder = None
    if which is Backend.LOCAL and not dry_run:
        kind_of = Reranker if pairs else SparseEncoder if sparse else Embedder
        embedder = model if isinstance(model, Embedder | SparseEncoder | Reranker) else kind_of(
            bundle, device=device, threads=threads, precision_hint=precision_hint, streams=streams
        )
    if pairs:
        embedding = score_type(dim)
    else:
        dim = embedder.dimension if isinstance(embedder, Embedder | SparseEncoder) else dim
        embedding = output_settings(dim, job.precision, job.truncate_dim, job.ranges, sparse)[3]  # bad settings fail here
    batch: EmbedBatch | ScoreBatch
    if isinstance(embedder, Embedder | SparseEncoder):
        batch = EmbedBatch(embedder, **job.batch_kwargs())  # bad chunking options fail here, before the scan
    elif not pairs:
        chunker(bundle, job.chunk_tokens, job.chunk_overlap, job.chunk_text, prompt_name, prompt)
    folder = OutputFolder(output)
    # a second run on OUTPUT is refused until this one ends; many large files are scanned several at once
    with folder.claimed(say, dry_run), _scanners(which, ray, say) as (scans, unpack):
        found = None if rescan else scan_record.read(folder.store)
        record = ScanRecord(found[1] if found is not None else None)
        if record.unreadable and found is not None:
            say(f"{found[0]} in the output folder is unreadable: every input file is read again")
        del found
        with _scan_progress(progress, progress_every) as scanned:
            plan = plan_input(input, rows_per_part, text=job.text, id_column=id_column, keep_columns=job.read_columns,
                              log=say, exclude=str(output), scanned=scanned, delimiter=csv_delimiter,
                              record=record, content_cuts=content_defined_parts, documents=documents,
                              as_text=as_text, ocr=ocr, attachments=attachment_text,
                              archives=archives, group_files=_groups_files(folder, overwrite),
                              xml_records=_xml_records(xml_record), scanner=scans, unpack=unpack)  # fmt: skip
        if job.keep_columns == (ALL_COLUMNS,):
            job = job.keeping(plan)
            say(f"keeping every column of the input: {', '.join(job.keep_columns) or 'none'}")
        if isinstance(embedder, Reranker):  # the query column read for the pairs is dropped unless kept
            batch = ScoreBatch(embedder, **job.score_kwargs())
        schema = output_schema(plan, id_column, job.keep_columns, dim, embedding, job.chunk_columns(), job.output_column)
        identity = job.identity(bundle_hash, plan)
        # the columns' types: a grown or edited JSONL whose values changed type (or a Parquet file of
        # other types sorting first) would leave parts of two schemas, which no reader takes as one
        identity[SCHEMA] = {f.name: str(f.type) for f in schema}
        if hint is not None:  # OpenVINO's compute precision changes the vectors; absent by default (older OUTPUTs stay valid)
            identity["precision_hint"] = hint.value
        model_name = str(model) if isinstance(model, str | Path) else str(bundle)
        done = folder.open(identity, overwrite, plan.still_valid,
                           {"model": model_name, "input": _input_record(plan), "parts_planned": len(plan.parts)},
                           functools.partial(plan.moves, shift_ids=id_column is None), dry_run,
                           plan.edited_from)  # fmt: skip
        todo = [p for p in plan.parts if p.index not in done]
        to_embed = sum(p.rows for p in todo)
        if dry_run:
            return DatasetSummary(
                output=str(output), rows=plan.rows, written=sum(int(e["rows"]) for e in done.values()),
                bad_rows=sum(len(e.get("bad", [])) for e in done.values()), parts=len(plan.parts),
                parts_resumed=len(done), seconds=time.perf_counter() - t0, rows_embedded=0, tokens=0,
                chunked=job.chunk_tokens is not None, dry_run=True, parts_moved=folder.moved,
                parts_changed=folder.changed, rows_to_embed=to_embed,
            )  # fmt: skip
        if record.changed:  # the folder is this job's now (``open``): the next run reads only what changes
            folder.write_file(scan_record.NAME, record.write)
            folder.store.delete(scan_record.OLD_NAME)  # an older version's, read above
        del record  # a file's findings each: hundreds of MB for a million documents
        if folder.moved:
            why = ("a file added, removed or renamed before them, or rows deleted or inserted before them in their file"
                   if plan.content_cuts else "a file added or removed before theirs")  # fmt: skip
            say(f"the input changed since the last run: {folder.moved} finished part(s) whose rows now lie elsewhere "
                f"in the input ({why}) kept under their new number")
        if folder.changed:
            say(f"the input changed since the last run: {folder.changed} finished part(s) made from rows that changed "
                "(or moved within their file) are computed again")
        size = f"about {rows_per_part} rows on average" if plan.content_cuts else f"up to {rows_per_part} rows"
        several = [p.files for p in plan.parts if p.files > 1]
        grouped = f" ({sum(several)} small files in {len(several)} of them)" if several else ""
        say(f"{plan.rows} rows in {len(plan.shards)} file(s), {len(plan.parts)} parts of {size}{grouped}; "
            f"{len(done)} finished by an earlier run, {len(todo)} to do")
        with _Tracker(plan, done, folder, progress, t0, progress_every) as tracker:
            on_rows = tracker.embedded if tracker.bar is not None else None  # the bar's only use of the batches
            if embedder is not None:
                from ._local import run_local

                run_local(todo, lambda p: job.slices(plan, p), batch,
                          lambda p, results: tracker.write(p, schema, results), on_rows)
            else:
                from ._ray import run_ray

                options = {"device": device, "precision_hint": precision_hint, "streams": streams}
                shared = model if is_uri(model) else bundle  # a URI: each node fetches it
                run_ray(plan, todo, shared, storage.absolute(output), schema, job, ray or RayOptions(), options, tracker.record, say,
                        on_rows, bundle_hash=bundle_hash)
        if not plan.parts:  # an empty input still makes a dataset with the output's columns, which readers need
            folder.write_file("part-000000.parquet", functools.partial(_write_parquet, schema.empty_table()))
        summary = dataclasses.replace(
            tracker.summary(str(output), time.perf_counter() - t0, job.chunk_tokens is not None),
            parts_moved=folder.moved, parts_changed=folder.changed, rows_to_embed=to_embed,
        )
        folder.finish(_final_manifest(plan, summary, schema, job.truncate_dim or dim, tracker, batch_size),
                      tracker.bad_rows())  # fmt: skip
    return summary


@contextlib.contextmanager
def _scanners(which: Backend, ray: RayOptions | None, say: Log) -> Iterator[tuple[Any, ProcessScans]]:
    """Where the planning scan reads several large files at once: the local backend's worker
    processes (``_scan_workers.ProcessScans``), the Ray backend's cluster (``ClusterScans``); and
    the worker processes of this machine that decompress a large file scanned here (the local
    backend's same ones). Each ended (its Ray stopped where it started one) at the end."""
    with contextlib.ExitStack() as ending:
        unpack = ProcessScans()
        ending.callback(unpack.close)
        scans: Any = unpack
        if which is Backend.RAY:
            from ._ray import ClusterScans

            scans = ClusterScans(ray or RayOptions(), say)
            ending.callback(scans.close)
        yield scans, unpack


def _groups_files(folder: OutputFolder, overwrite: bool) -> bool:
    """Whether the plan makes parts of several small files: unless OUTPUT was begun by an embedrt
    that made a part of each file, which a run continues as it began."""
    old = None if overwrite else folder.read_manifest()
    return old is None or "small_files" in old.get("identity", {})


def _query_column(query_column: object, id_column: str | None) -> str | None:
    if query_column is None:
        return None
    if not isinstance(query_column, str) or not query_column:
        raise ValueError(f"query_column must be a column name, got {query_column!r}")
    if query_column in ("id", SCORE) or query_column == id_column:
        raise ValueError(f"query_column {query_column!r} names a column the output has (id, score) or the id column; "
                         "a pair's query is a text column of its own")  # fmt: skip
    return query_column


def _check_kept(keep: tuple[str, ...], id_column: str | None, chunks: bool, chunk_text: bool, column: str) -> None:
    """Kept columns must not be named as the output's own (``column``: the model's, ``embedding`` or ``score``)."""
    ours = ("id", column, *(CHUNK_COLUMNS if chunks else ()), *((CHUNK_TEXT,) if chunk_text else ()))
    for c in keep:
        if c in ours:
            raise ValueError(f"keep_columns may not hold {c!r}: the output has its own {c!r} column")
    if id_column is not None and id_column in keep:
        raise ValueError(f"id_column {id_column!r} is also in keep_columns; it is written as 'id' already")


@dataclass(frozen=True)
class JobSettings:
    """What decides a job's output, checked once; the same on every backend and every actor."""

    text_column: str
    id_column: str | None
    keep_columns: tuple[str, ...]
    on_error: OnError
    batch_size: int
    rows_per_part: int
    normalize: bool
    prompt_name: str | None
    prompt: str | None
    precision: EmbeddingPrecision = EmbeddingPrecision.FLOAT32
    truncate_dim: int | None = None
    ranges: np.ndarray | None = None  # int8/uint8: (2, dim) mins and maxes, one scale for the corpus
    chunk_tokens: int | str | None = None  # None: texts truncated; "max": the model's window (``with_window``)
    chunk_overlap: int = 0
    chunk_text: bool = False
    max_active_dims: int | None = None  # sparse bundles: the largest weights kept per vector
    # megabytes of the rows of texts embedded last, not embedded again (not part of the identity: a
    # held row is the row the model gives)
    repeat_cache_mb: float = JOB_CACHE_MB
    # characters of text a part is read, embedded and written in at a time (not part of the
    # identity: slices change how a part is made, not what it holds)
    slice_chars: int = field(default_factory=lambda: _readers.SLICE_CHARS)
    text_template: str | None = None  # each row's text composed from several columns
    query_column: str | None = None  # a reranker's job: each pair's first text (``_score``)
    chunk_pages: bool = False  # windows' pages (``CHUNK_PAGE``): PDF documents' windows
    where: str | None = None  # the rows embedded: those where this SQL condition holds (``_where``)

    @functools.cached_property
    def text(self) -> TextSource:
        return TextSource.of(self.text_column, self.text_template)

    @classmethod
    def checked(cls, text_column: str, id_column: str | None, keep_columns: Any, on_error: str | OnError,
                batch_size: int, rows_per_part: int, normalize: bool, prompt_name: str | None,
                prompt: str | None, *, precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
                truncate_dim: int | None = None, ranges: np.ndarray | None = None,
                chunk_tokens: int | str | None = None, chunk_overlap: int = 0,
                chunk_text: bool = False, max_active_dims: int | None = None,
                repeat_cache_mb: float = JOB_CACHE_MB, text_template: str | None = None,
                query_column: str | None = None, chunk_pages: bool = False, where: str | None = None,
                ) -> JobSettings:  # fmt: skip
        text_source(text_column, text_template)  # a bad template fails here, before any work
        keep = tuple(c.strip() for c in keep_columns.split(",") if c.strip()) if isinstance(keep_columns, str) else tuple(keep_columns)
        if chunk_tokens is not None and chunk_tokens != "max":
            chunk_tokens = check_int(chunk_tokens, "chunk_tokens", also=" or 'max'")
        if ALL_COLUMNS in keep and keep != (ALL_COLUMNS,):
            raise ValueError(f"keep_columns {list(keep)}: {ALL_COLUMNS!r} (every column) stands alone")
        _check_kept(keep, id_column, chunk_tokens is not None, chunk_text, SCORE if query_column is not None else "embedding")
        batch_size = check_int(batch_size, "batch_size")
        policy = parse(OnError, on_error, "on_error")
        return cls(text_column, id_column, keep, policy, batch_size, rows_per_part, bool(normalize), prompt_name, prompt,
                   parse(EmbeddingPrecision, precision, "precision"), truncate_dim,
                   None if ranges is None else np.asarray(ranges, dtype=np.float32), chunk_tokens,
                   check_int(chunk_overlap, "chunk_overlap", 0), bool(chunk_text),
                   None if max_active_dims is None else check_int(max_active_dims, "max_active_dims"),
                   repeat_cache_mb=check_cache_mb(repeat_cache_mb, "repeat_cache_mb"),
                   text_template=text_template, query_column=_query_column(query_column, id_column),
                   chunk_pages=chunk_pages, where=None if where is None else Condition(where).sql)  # fmt: skip

    def keeping(self, plan: Plan) -> JobSettings:
        """``keep_columns=("*",)`` as the columns the input has (``Plan.every_column``), so that the
        job's identity and the output's schema name them."""
        if self.keep_columns != (ALL_COLUMNS,):
            return self
        try:
            _check_kept(plan.every_column, None, self.chunk_tokens is not None, self.chunk_text, self.output_column)
        except ValueError as e:
            raise InputError(f"keep_columns '*' (every column): the input has a column the output names too: {e}; "
                             "pass it as --id-column if it names the rows, or list the columns to keep") from None
        return dataclasses.replace(self, keep_columns=plan.every_column)

    def with_window(self, max_seq_length: int) -> JobSettings:
        """``chunk_tokens="max"`` as the model's window (so that the job's identity holds the number)."""
        if self.chunk_tokens != "max":
            return self
        return dataclasses.replace(self, chunk_tokens=max_seq_length)

    def chunk_columns(self) -> dict[str, pa.DataType]:
        """The columns chunking adds to the output, before the embedding (none without it)."""
        if self.chunk_tokens is None:
            return {}
        return {**CHUNK_COLUMNS, **({CHUNK_PAGE: pa.int32()} if self.chunk_pages else {}),
                **({CHUNK_TEXT: pa.string()} if self.chunk_text else {})}  # fmt: skip

    def identity(self, bundle_hash: str, plan: Plan) -> dict[str, Any]:
        """What must match for a run to continue an OUTPUT (batch size, threads, backend may change)."""
        return {
            "bundle": bundle_hash, "input": plan.fingerprint(), "format": plan.format.value,
            "rows_per_part": self.rows_per_part, "text_column": self.text_column, "id_column": self.id_column,
            "keep_columns": list(self.keep_columns), "on_error": self.on_error.value, "normalize": self.normalize,
            "prompt_name": self.prompt_name, "prompt": self.prompt, **self._output_identity(),
            **({"text_column": None, "text_template": self.text_template} if self.text_template is not None else {}),
            **({"query_column": self.query_column} if self.query_column is not None else {}),
            **({"where": self.where} if self.where is not None else {}),
            **({"csv_delimiter": plan.delimiter} if plan.delimiter is not None else {}),
            **({"part_cuts": "content"} if plan.content_cuts else {}),
            **({"small_files": "grouped"} if plan.grouped else {}),
            **{kind: "text and OCR" if kind == "pdf" and plan.ocr else "text" for kind in plan.as_text},
            **({"attachments": "text and archives" if plan.archives else "text"} if plan.attachments else {}),
            **({"xml_records": list(plan.xml_records)} if plan.xml_records else {}),
        }  # fmt: skip

    def _output_identity(self) -> dict[str, Any]:
        """The output precision, only where it differs from plain float32 (older OUTPUTs stay valid)."""
        out: dict[str, Any] = {}
        if self.precision is not EmbeddingPrecision.FLOAT32:
            out["precision"] = self.precision.value
        if self.truncate_dim is not None:
            out["truncate_dim"] = self.truncate_dim
        if self.ranges is not None:
            out["ranges_sha256"] = hashlib.sha256(np.ascontiguousarray(self.ranges).tobytes()).hexdigest()
        if self.chunk_tokens is not None:
            out["chunks"] = {"tokens": self.chunk_tokens, "overlap": self.chunk_overlap, "text": self.chunk_text,
                             "cuts": CUTS}
        if self.max_active_dims is not None:
            out["max_active_dims"] = self.max_active_dims
        return out

    def batch_kwargs(self) -> dict[str, Any]:
        from ._readers import TEXT

        return {"text_column": TEXT, "id_column": "id", "on_error": self.on_error, "batch_size": self.batch_size,
                "normalize": self.normalize, "prompt_name": self.prompt_name, "prompt": self.prompt,
                "precision": self.precision, "truncate_dim": self.truncate_dim, "ranges": self.ranges,
                "chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap, "chunk_text": self.chunk_text,
                "max_active_dims": self.max_active_dims, "repeat_cache_mb": self.repeat_cache_mb,
                "chunk_pages": self.chunk_pages}  # fmt: skip

    @property
    def output_column(self) -> str:
        """The model's column: a reranker's ``score``, else the ``embedding``."""
        return SCORE if self.query_column is not None else "embedding"

    @property
    def read_columns(self) -> tuple[str, ...]:
        """The columns read beside the text: the kept ones, a reranker's query column and the columns
        the ``where`` condition names (but the text's and the id's, which it has as they are)."""
        if self.keep_columns == (ALL_COLUMNS,):
            return self.keep_columns
        extra = [] if self.query_column is None else [self.query_column]
        extra += [c for c in self.condition.columns if c not in self._where_names] if self.condition else []
        return tuple(dict.fromkeys((*self.keep_columns, *extra)))

    @functools.cached_property
    def condition(self) -> Condition | None:
        return None if self.where is None else Condition(self.where)

    @functools.cached_property
    def _read_for_where(self) -> list[str]:
        """The columns read for the ``where`` condition alone (not kept, not the query): dropped once
        it is tested."""
        kept = (*self.keep_columns, *(() if self.query_column is None else (self.query_column,)))
        return [c for c in self.read_columns if c not in kept]

    @functools.cached_property
    def _where_names(self) -> dict[str, str]:
        """The condition's names for the columns the slices have under names of their own: the text
        embedded (``TEXT``), the id."""
        from ._readers import TEXT

        names = {} if self.text_template is not None else {self.text_column: TEXT}
        return {**names, **({self.id_column: "id"} if self.id_column is not None else {})}

    def score_kwargs(self) -> dict[str, Any]:
        """``ScoreBatch``'s arguments, once ``keep_columns`` names columns (``keeping``)."""
        from ._readers import TEXT

        assert self.query_column is not None
        return {"query_column": self.query_column, "text_column": TEXT, "keep_query": self.query_column in self.keep_columns,
                "id_column": "id", "on_error": self.on_error, "batch_size": self.batch_size,
                "prompt_name": self.prompt_name, "prompt": self.prompt, "repeat_cache_mb": self.repeat_cache_mb}  # fmt: skip

    def slices(self, plan: Plan, part: PartSpec) -> Iterator[pa.Table]:
        """The part's rows, in tables of about ``SLICE_CHARS`` characters of text each (one for most
        parts: a slice bounds the memory of a part of long documents)."""
        slices = _readers.read_slices(plan, part, self.text, self.id_column, self.read_columns, self.slice_chars)
        return slices if self.condition is None else map(self._kept, slices)

    def _kept(self, table: pa.Table) -> pa.Table:
        """A slice's rows where the ``where`` condition holds, without the columns read for it alone;
        how many it left out in its metadata (``LEFT_OUT_KEY``), for the part's journal entry."""
        from ._readers import BAD

        assert self.condition is not None
        kept = self.condition.kept(table, self._where_names, table.column(BAD) if BAD in table.column_names else None)
        out = table.filter(kept).drop_columns(self._read_for_where)
        left_out = str(table.num_rows - out.num_rows).encode()
        return out.replace_schema_metadata({**(table.schema.metadata or {}), LEFT_OUT_KEY: left_out})


def _xml_records(xml_record: str | Sequence[str] | None) -> tuple[str, ...]:
    """``xml_record`` as element names, checked."""
    if xml_record is None:
        return ()
    names = [n.strip() if isinstance(n, str) else n for n in (xml_record.split(",") if isinstance(xml_record, str)
                                                              else xml_record)]  # fmt: skip
    if not names or any(not isinstance(n, str) or not _XML_NAME.fullmatch(n) for n in names):
        raise InputError(f"xml_record (--xml-record) takes XML element names, comma-separated (PubmedArticle); got "
                         f"{xml_record!r}")  # fmt: skip
    return tuple(dict.fromkeys(names))


_XML_NAME = re.compile(r"[A-Za-z_][\w.-]*")


def _bundle_identity(
    bundle: Path, prompt_name: str | None, prompt: str | None, query_column: str | None
) -> tuple[str, int, int, BundleKind]:
    """The bundle's hash, dimension (a reranker's: its labels), max_seq_length and kind; a bad
    prompt or a bundle of a kind the job cannot use (a reranker without ``query_column``, or the
    other way round) fails here, before any work (or any Ray actor)."""
    from .._base import prompt_text

    manifest = load_manifest(bundle, verify=False)  # the Embedder verified it (local) or the actors will
    prompt_text(manifest, prompt_name, prompt)
    check_job_kind(bundle, manifest.kind, query_column)
    dim = manifest.reranker.num_labels if manifest.reranker is not None else manifest.dimension
    return bundle_digest(bundle), dim, manifest.max_seq_length, manifest.kind


def output_schema(
    plan: Plan, id_column: str | None, keep: tuple[str, ...], dim: int, embedding: pa.DataType | None = None,
    chunks: dict[str, pa.DataType] | None = None, column: str = "embedding",
) -> pa.Schema:
    """The output's columns and types, fixed before any row is read; ``column``: the model's
    (``embedding``, or a reranker's ``score``)."""
    from ._readers import _ARROW

    wanted = [c for c in (id_column, *keep) if c]
    first: pa.Schema | None = None  # Parquet and Arrow: the first file's own types
    if wanted and plan.format is InputFormat.PARQUET:
        with storage.parquet_file(plan.shards[0].path) as pf:
            first = pf.schema_arrow
    elif wanted and plan.format is InputFormat.ARROW:
        with storage.arrow_batches(plan.shards[0].path) as (first, _batches):
            pass

    def column_type(name: str) -> pa.DataType:
        if first is not None:
            return first.field(name).type
        if plan.format is InputFormat.JSONL:
            return _ARROW[plan.json_types.get(name, "string")]
        return pa.string()  # csv / tsv: text as written

    fields = [pa.field("id", column_type(id_column) if id_column else pa.int64())]
    fields += [pa.field(c, column_type(c)) for c in keep]
    fields += [pa.field(name, kind) for name, kind in (chunks or {}).items()]
    fields.append(pa.field(column, embedding or pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def conform(table: pa.Table, schema: pa.Schema, plan: Plan, part: PartSpec) -> pa.Table:
    """``table`` in the job's output schema; a file whose columns have other types is named."""
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        differ = [f"{f.name}: {f.type} there, {schema.field(f.name).type} in the output"
                  for f in table.schema if f.name in schema.names and f.type != schema.field(f.name).type]  # fmt: skip
        files = plan.shards[part.shard:part.shard + part.files]
        where = files[0].path if len(files) == 1 else f"one of {files[0].path} ... {files[-1].path} (part {part.index})"
        raise InputError(
            f"{where}: its columns do not match the output's, whose types come from the "
            f"first input file ({'; '.join(differ) or table.schema.remove_metadata()}): {e}"
        ) from e


def _write_parquet(table: pa.Table, f: IO[bytes]) -> None:  # (table, file) for functools.partial
    import pyarrow.parquet as pq

    pq.write_table(table, f, row_group_size=max(table.num_rows, 1))


# a part's output rows are written as a row group once they hold this many bytes (most parts: one)
ROW_GROUP_BYTES = 64 << 20


def write_part(
    folder: OutputFolder, results: Iterable[BatchResult], schema: pa.Schema, plan: Plan, part: PartSpec
) -> dict[str, Any]:
    """Write the part's file whole (``OutputFolder.write_file``) from its slices' results, in order;
    its journal entry, but for the keys of its input the driver adds (``_Tracker.record``, both backends)."""
    entry: dict[str, Any] = {}
    size = folder.write_file(part.name, lambda f: entry.update(_write_slices(f, results, schema, plan, part)))
    return {**entry, "file": part.name, "bytes": size}


def _write_slices(
    f: IO[bytes], results: Iterable[BatchResult], schema: pa.Schema, plan: Plan, part: PartSpec
) -> dict[str, Any]:
    """The output of a part's slices as one Parquet file (a row group per ``ROW_GROUP_BYTES`` of
    rows); what the journal records of it."""
    import pyarrow.parquet as pq

    entry: dict[str, Any] = {"part": part.index, "input_rows": part.rows, "rows": 0, "tokens": 0, "truncated": 0,
                             "repeats": 0, "bad": []}  # fmt: skip
    held: list[pa.Table] = []  # rows not yet written, and their bytes
    size = 0
    with pq.ParquetWriter(f, schema, **writer_options(schema)) as writer:
        for result in results:
            table = conform(result.table, schema, plan, part)
            entry["rows"] += table.num_rows
            entry["tokens"] += result.tokens
            entry["truncated"] += result.truncated
            entry["repeats"] += result.repeats
            entry["bad"] += [b.to_dict() for b in result.bad]
            left_out = (result.table.schema.metadata or {}).get(LEFT_OUT_KEY)
            if left_out is not None:
                entry["left_out"] = entry.get("left_out", 0) + int(left_out)
            held.append(table)
            size += table.nbytes
            if size >= ROW_GROUP_BYTES:
                writer.write_table(pa.concat_tables(held), row_group_size=sum(t.num_rows for t in held))
                held, size = [], 0
        if held or not entry["rows"]:
            rows = pa.concat_tables(held) if held else schema.empty_table()
            writer.write_table(rows, row_group_size=max(rows.num_rows, 1))
    return entry


class _Tracker:
    """Finished parts: journals them, counts them, shows progress."""

    def __init__(self, plan: Plan, done: dict[int, dict[str, Any]], folder: OutputFolder, progress: bool,
                 t0: float, every: float = 60.0) -> None:  # fmt: skip
        self.plan, self.folder, self.t0 = plan, folder, t0
        self.entries = dict(done)
        self.resumed = len(done)
        self.rows = self.tokens = 0
        self.bar = _progress(plan.rows, sum(plan.parts[i].rows for i in done), progress, every)
        self._shown: dict[int, int] = {}  # rows of a part not yet journaled the bar already shows
        self._lock = threading.Lock()  # the model's (or Ray's progress) thread and the writer's

    def __enter__(self) -> _Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def write(self, part: PartSpec, schema: pa.Schema, results: Iterable[BatchResult]) -> None:
        """Local backend: write the part whole from its slices' results, then journal it."""
        self.record(write_part(self.folder, results, schema, self.plan, part))

    def record(self, entry: dict[str, Any]) -> None:
        """Journal a part written whole (by the local backend's writer or a Ray actor), with what it
        was made from: what a resume checks it against (``Plan.still_valid``, ``Plan.moves``)."""
        part = self.plan.parts[int(entry["part"])]
        keys = {"part_key": self.plan.part_key(part), "rows_key": self.plan.rows_key(part),
                "first_row": self.plan.first_row(part), "first_line": part.first_line}  # fmt: skip
        self._count(self.folder.record({**entry, **keys}))

    def embedded(self, part: PartSpec, rows: int) -> None:
        """A model batch of ``rows`` of ``part`` is done (the bar moves within a part). On Ray this may
        come after the part was journaled, or twice for a part run again: the bar shows each row once."""
        assert self.bar is not None  # given to the backends only with a bar
        with self._lock:
            if part.index in self.entries:
                return
            shown = self._shown.get(part.index, 0)
            self._shown[part.index] = min(part.rows, shown + rows)
            self.bar.update(self._shown[part.index] - shown)

    def _count(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.entries[int(entry["part"])] = entry
            self.rows += int(entry["input_rows"]) - int(entry.get("left_out", 0))
            self.tokens += int(entry["tokens"])
            if self.bar is not None:  # the part's rows the batches did not show: its bad rows, or more
                self.bar.update(int(entry["input_rows"]) - self._shown.pop(int(entry["part"]), 0))
                rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
                self.bar.set_postfix(tokens_per_s=f"{rate:.0f}", refresh=False)

    def bad_rows(self) -> list[dict[str, Any]]:
        return [b for i in sorted(self.entries) for b in self.entries[i].get("bad", [])]

    def summary(self, output: str, seconds: float, chunked: bool) -> DatasetSummary:
        bad = self.bad_rows()
        return DatasetSummary(
            output=output, rows=self.plan.rows, written=sum(int(e["rows"]) for e in self.entries.values()),
            bad_rows=len(bad), parts=len(self.plan.parts), parts_resumed=self.resumed, seconds=seconds,
            rows_embedded=self.rows, tokens=self.tokens, bad_examples=bad[:20],
            truncated=sum(int(e.get("truncated", 0)) for e in self.entries.values()), chunked=chunked,
            repeats=sum(int(e.get("repeats", 0)) for e in self.entries.values()),
            left_out=sum(int(e.get("left_out", 0)) for e in self.entries.values()),
        )  # fmt: skip


def _final_manifest(
    plan: Plan, summary: DatasetSummary, schema: pa.Schema, dimension: int, stats: _Tracker, batch_size: int
) -> dict[str, Any]:
    """``dimension``: of the vectors (after ``truncate_dim``); packed bits hold it in ``ceil(dimension / 8)`` bytes."""
    bad = stats.bad_rows()
    return {
        "created_by": f"embedrt {__version__}",
        "rows": summary.written,
        "input": _input_record(plan),
        "dimension": dimension,
        "schema": {f.name: str(f.type) for f in schema},
        "parts": [{"file": stats.entries[i]["file"], "rows": stats.entries[i]["rows"]} for i in sorted(stats.entries)],
        "bad_rows": {"count": len(bad), "ids": [b.get("id") for b in bad[:1000]],
                     "file": "_bad_rows.jsonl" if bad else None},
        "truncated_rows": summary.truncated,
        "repeated_rows": summary.repeats,
        **({"left_out_rows": summary.left_out} if summary.left_out else {}),
        "last_run": {**asdict(summary), "batch_size": batch_size, "bad_examples": None},
    }  # fmt: skip


def _input_record(plan: Plan) -> dict[str, Any]:
    """The manifest's record of the input: its fingerprint, and its files, the first ``MANIFEST_FILES``
    named (a folder of a million documents would make the manifest, read and written by every run,
    hundreds of MB; ``_input_scan.arrow`` names every file)."""
    return {"format": plan.format.value, "rows": plan.rows, "fingerprint": plan.fingerprint(),
            "file_count": len(plan.shards),
            "files": [{"path": s.path, "rows": s.rows, "sha256": s.sha256, **({"name": s.name} if s.name else {})}
                      for s in plan.shards[:MANIFEST_FILES]]}  # fmt: skip


@contextlib.contextmanager
def _scan_progress(enabled: bool, every: float) -> Iterator[Callable[[int], None] | None]:
    """A bar of the rows the planning scan found (a corpus of many GB takes minutes to scan); a line
    every ``every`` seconds where stderr is no terminal."""
    if not enabled:
        yield None
        return
    # no closing line: the job's next message says what the scan found
    with contextlib.closing(progress_bar("planning", "row", every=every, closing_line=False, unit_scale=True,
                                         leave=False)) as bar:  # fmt: skip
        yield bar.update


def _progress(total: int, initial: int, enabled: bool, every: float) -> Any:
    """The job's bar, in rows; plain lines every ``every`` seconds where stderr is no terminal."""
    if not enabled:
        return None
    return progress_bar("embed-dataset", "row", total, initial, every=every, unit_scale=True, smoothing=0.1)

"""``embedrt embed-dataset``: the corpus job on the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .._cache import JOB_CACHE_MB
from .._lines import csv_delimiter_arg
from .._model_args import add_model_arguments, model_options
from ._as_text import KINDS
from ._batch import OnError
from ._job import Backend, RayOptions, embed_dataset
from ._mbox import COLUMNS
from ._template import one_of_flags
from ._warc import COLUMNS as WARC_COLUMNS

_EXAMPLES = """examples:
  embedrt embed-dataset corpus.jsonl vectors/ --model bundles/minilm --id-column doc_id
  embedrt embed-dataset 'shards/*.parquet' vectors/ --model bundles/minilm --keep-columns title,url
  embedrt embed-dataset beir/corpus.jsonl vectors/ --model bundles/minilm --id-column _id --text-template '{title} {text}'
  embedrt embed-dataset corpus.txt vectors/ --model bundles/minilm --on-error skip
  embedrt embed-dataset pairs.jsonl scores/ --model bundles/reranker --query-column query
  embedrt embed-dataset 'docs/**/*.md' chunks/ --model bundles/minilm --documents --chunk-tokens max
  embedrt embed-dataset corpus/ vectors/ --model bundles/minilm --backend ray --num-actors 8
  embedrt embed-dataset s3://bucket/docs/ s3://bucket/vectors/ --model s3://bucket/bundles/minilm

INPUT, OUTPUT and BUNDLE may be s3:// or gs:// URIs (credentials, region and endpoint from the
environment: AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, ...).

Run the same command again after a crash, a kill or a bad row (once fixed): finished parts are kept
and the job continues where it stopped. A run holds OUTPUT while it works: a second one started on it
meanwhile is refused, naming the first. SIGTERM stops a run as Ctrl-C does (exit status 143).
`embedrt info OUTPUT` tells from anywhere how far a job is (complete, running, stopped).
Read the result with pyarrow.parquet.read_table(OUTPUT).
"""


def add_embed_dataset_parser(sub: Any) -> None:
    p = sub.add_parser(
        "embed-dataset",
        help="embed a whole corpus (txt/jsonl/csv/parquet/arrow/mbox/warc/xml records, or a folder of documents) into a Parquet dataset, resumable",
        description="Embed every row of INPUT into the Parquet dataset folder OUTPUT (columns id, the kept "
        "columns, embedding), streaming with bounded memory, one part file per --rows-per-part rows, each "
        "written whole. Re-running the same command continues a killed job.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="a .txt/.jsonl/.csv/.tsv/.parquet/.arrow file, an .mbox mailbox (a row per message: "
                   f"columns {', '.join(COLUMNS)}; a file without a suffix that begins 'From ' too), "
                   f"a WARC web archive (.warc.gz, Common Crawl's WET files .warc.wet.gz: a row per page, HTML read as its "
                   f"visible text; columns {', '.join(WARC_COLUMNS)}), an .xml file of "
                   "records (with --xml-record), a folder of them (a saved Hugging "
                   "Face dataset), or a quoted glob (with --documents: files of any name, each one text); "
                   "local, or an s3:// or gs:// URI")  # fmt: skip
    p.add_argument("output", help="the output folder (Parquet parts, _manifest.json); local, or an s3:// or gs:// URI")
    p.add_argument("-m", "--model", required=True, metavar="BUNDLE", help="a bundle folder written by embedrt export (an s3:// or gs:// URI is fetched into a local cache)")
    p.add_argument("--text-column", help="column holding the texts (default: text; not for .txt)")
    p.add_argument("--text-template", metavar="TEMPLATE",
                   help="each row's text made from several columns, as in '{title}\\n{text}' or 'title: {title|none} | "
                   "text: {text}' (after |: the text for a null, missing or empty value; without one a null makes a bad "
                   "row); instead of --text-column")  # fmt: skip
    p.add_argument("--id-column", help="column whose values name the rows (default: the row number from 0)")
    p.add_argument("--csv-delimiter", metavar="CHAR", type=csv_delimiter_arg,
                   help="the field delimiter of .csv/.tsv input (default: ',' and tab); e.g. ';' as spreadsheets "
                   "save CSV where the comma is the decimal mark, '\\t' or tab for a tab")  # fmt: skip
    p.add_argument("--query-column", metavar="COLUMN",
                   help="with a reranker bundle: score each row's (query, text) pair, COLUMN holding the query, into "
                   "a column 'score' instead of embedding the text")  # fmt: skip
    p.add_argument("--keep-columns", default="", metavar="A,B|'*'",
                   help="comma-separated columns copied to the output; '*' (quoted): every column of the input "
                   "but --id-column, the text too (JSONL: every key of any row)")  # fmt: skip
    p.add_argument("--where", metavar="CONDITION",
                   help="embed only the rows where this SQL condition on their columns holds (DuckDB's SQL, as in a "
                   "WHERE clause: \"language LIKE 'eng%%'\", \"length(text) > 200 AND lang = 'en'\", "
                   "\"url IN (SELECT url FROM 'keep.parquet')\"); the others are left out of the output. The text "
                   "column's name is the text embedded (a page's text), other columns are read for it")  # fmt: skip
    p.add_argument("--on-error", default="fail", choices=[m.value for m in OnError],
                   help="bad rows (null, not a string, undecodable, missing column): fail (default) names the "
                   "row and stops; skip leaves it out; null keeps it with a null embedding")  # fmt: skip
    p.add_argument("--json", action="store_true",
                   help="print the summary (or the dry run's) as one JSON object on stdout, for scripts")
    p.add_argument("--dry-run", action="store_true",
                   help="plan the input and read OUTPUT as a run would (same refusals), print what it would keep, "
                   "move and compute, and stop: no model loaded, nothing written")  # fmt: skip
    p.add_argument("--content-defined-parts", action="store_true",
                   help="end a text file's parts after rows chosen by their content (--rows-per-part on average) "
                   "instead of every --rows-per-part rows, so that rows deleted or inserted inside a file change "
                   "only the parts around them: a later run moves the others instead of computing them again")  # fmt: skip
    p.add_argument("--documents", action="store_true",
                   help="each input file is one text (a folder of Markdown, HTML, text or, with --pdf-text, --docx-text, "
                   "--pptx-text, --epub-text, --odf-text, --xlsx-text, --eml-text, --rtf-text, --image-text, --xml-text and "
                   "--wiki-text, PDF, Word, PowerPoint, EPUB, OpenDocument, Excel, RTF, XML and wikitext documents, e-mail "
                   "messages and images; "
                   "every file but "
                   "hidden ones, or a glob's matches): rows of the columns path (the file's path under INPUT, the "
                   "default --id-column) and text; with --chunk-tokens max each is embedded whole in windows")  # fmt: skip
    for kind in KINDS:  # --html-text, --pdf-text ...
        rows = {"html": "; with rows (.jsonl, .csv, .parquet ...): each row's text is an HTML page, read so",
                "wiki": "; with rows (.jsonl, .csv, .parquet ...): each row's text is wikitext, read so; an .xml input "
                        "is a MediaWiki export (Wikipedia's pages-articles dumps, .xml.bz2 too), read a row per article "
                        "(pages of the main namespace, no redirects): its title and text, columns id, title, timestamp, url"}.get(kind.name, "")
        p.add_argument(f"--{kind.name}-text", action="store_true", help=f"with --documents: read {kind.help}{rows}")
    p.add_argument("--ocr", action="store_true",
                   help="with --pdf-text: read a PDF's pages without text (scanned) by OCR (RapidOCR: pip install "
                   "'embedrt[ocr]'; seconds a page)")  # fmt: skip
    p.add_argument("--attachment-text", action="store_true",
                   help="with e-mail (--documents --eml-text, or a mailbox): read each message's attachments of the kinds "
                   "asked for (--pdf-text, --docx-text, ...) and put their text after the message's, an 'Attachment: NAME' "
                   "line before each")  # fmt: skip
    p.add_argument("--archives", action="store_true",
                   help="with --documents: read each zip or tar archive (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, "
                   ".tar.zst; INPUT itself, or one in its folder) as a folder of documents, a row per file in it, its "
                   "path the archive's, then its own in the archive; without it an archive is a bad row. With "
                   "--attachment-text: the files in archives attached to messages are read too")  # fmt: skip
    p.add_argument("--xml-record", metavar="NAME[,NAME]",
                   help="an .xml INPUT is read a row per element NAME, each found where a line begins with its opening tag "
                   "(PubMed's baseline files: PubmedArticle): column text is the record as --xml-text reads a document (a "
                   "PubMed article: title, abstract, keywords); any other column named (--id-column PMID, --keep-columns, "
                   "--text-template) is the record's attribute of that name, else the text of its first element of that name")  # fmt: skip
    p.add_argument("--rescan", action="store_true",
                   help="read and hash every input file again, trusting none of the scan recorded in OUTPUT (by "
                   "default a file whose size and time stamps are unchanged since that scan is not read again)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rows-per-part", type=int, help="rows per output file (default 10000; small files share "
                   "one; with --documents 100 documents on average)")  # fmt: skip
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    p.add_argument("--prompt-name", help="a prompt from the bundle's manifest, prepended to each text")
    p.add_argument("--prompt", help="a prompt of your own, prepended to each text")
    p.add_argument("--precision", default="float32", choices=["float32", "float16", "int8", "uint8", "binary", "ubinary"],
                   help="the embedding column's precision, as sentence-transformers' quantize_embeddings: int8/uint8 "
                   "need --ranges; binary/ubinary pack one bit per dimension; float16: half floats, half the bytes "
                   "(Parquet's FLOAT16 type: pyarrow, DuckDB, Polars read it)")  # fmt: skip
    p.add_argument("--truncate-dim", type=int, help="keep the first N dimensions (Matryoshka models)")
    p.add_argument("--ranges", metavar="FILE.npy", help="int8/uint8 calibration ranges, shape (2, dim): mins, maxes "
                   "(embedrt.quantization_ranges on a sample), the same for the whole corpus")  # fmt: skip
    p.add_argument("--chunk-tokens", type=_tokens, metavar="N|max",
                   help="cut texts longer than N model tokens (special tokens and prompt included; 'max': the "
                   "model's max_seq_length) into windows and write a row per window (columns chunk, chunk_start, "
                   "chunk_end), instead of truncating them")  # fmt: skip
    p.add_argument("--chunk-overlap", type=int, default=0, metavar="N", help="tokens shared by consecutive windows (default 0)")
    p.add_argument("--chunk-text", action="store_true", help="also write each window's text (column chunk_text)")
    p.add_argument("--max-active-dims", type=int, metavar="N",
                   help="sparse (SPLADE) bundles: keep each vector's N largest weights")  # fmt: skip
    p.add_argument("--repeat-cache-mb", type=float, default=JOB_CACHE_MB, metavar="MB",
                   help="keep the vectors of the texts embedded last (a reranker's scores of the pairs scored last), "
                   "up to MB megabytes, so that one met again in a later part is not embedded again (default "
                   "%(default)g; 0: none; repeats within a slice of a part are always embedded once)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an OUTPUT made from another input/model/options")
    add_model_arguments(p, "onnxruntime threads (local backend; default: available CPUs)", streams_default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--progress-every", type=float, default=60.0, metavar="SECONDS",
                   help="where stderr is no terminal (a log file, a batch system): a progress line every SECONDS "
                   "instead of a bar (default %(default)g)")  # fmt: skip
    g = p.add_argument_group("Ray backend (pip install 'embedrt[ray]')")
    g.add_argument("--backend", default="local", choices=[b.value for b in Backend])
    g.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    g.add_argument("--num-actors", type=int, help="model replicas (default: cluster CPUs less one, per actor)")
    g.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs (onnxruntime threads) per actor")
    g.add_argument("--num-gpus-per-actor", type=float, default=0.0, help="GPUs per actor (CUDA bundles)")
    g.add_argument("--max-actor-restarts", type=int, default=3, help="restarts of an actor whose process "
                   "died (its part runs again); a part that kills its actor more often fails the job")  # fmt: skip
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    ranges = np.load(args.ranges, allow_pickle=False) if args.ranges else None
    one_of_flags(args.text_column, args.text_template)
    ray = RayOptions(args.address, args.num_actors, args.cpus_per_actor, args.num_gpus_per_actor, args.max_actor_restarts)
    try:
        with _sigterm_interrupts():
            summary = embed_dataset(
                args.input, args.output, args.model, text_column=args.text_column or "text", text_template=args.text_template, id_column=args.id_column,
                keep_columns=args.keep_columns, on_error=args.on_error, batch_size=args.batch_size, rows_per_part=args.rows_per_part,
                normalize=args.normalize, prompt_name=args.prompt_name, prompt=args.prompt, overwrite=args.overwrite,
                **model_options(args), backend=args.backend, ray=ray, progress=not args.no_progress,
                progress_every=args.progress_every, log=_log,
                precision=args.precision, truncate_dim=args.truncate_dim, ranges=ranges, chunk_tokens=args.chunk_tokens,
                chunk_overlap=args.chunk_overlap, chunk_text=args.chunk_text, max_active_dims=args.max_active_dims,
                repeat_cache_mb=args.repeat_cache_mb, query_column=args.query_column, where=args.where, csv_delimiter=args.csv_delimiter,
                dry_run=args.dry_run, rescan=args.rescan, content_defined_parts=args.content_defined_parts,
                documents=args.documents, ocr=args.ocr, attachment_text=args.attachment_text,
                archives=args.archives, xml_record=args.xml_record, **{f"{kind.name}_text": getattr(args, f"{kind.name}_text") for kind in KINDS},
            )  # fmt: skip
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, _Terminated) else "interrupted"
        _log(f"{how}: the parts finished so far are kept in {args.output}; run the same command to continue")
        return 143 if isinstance(e, _Terminated) else 130
    print(json.dumps(summary.as_dict()) if args.json else summary)
    if summary.dry_run:
        return 0
    if summary.bad_rows:
        _log(f"{summary.bad_rows} bad row(s) ({args.on_error}), listed in {args.output}/_bad_rows.jsonl; first: "
             f"{summary.bad_examples[0]}")  # fmt: skip
    if summary.truncated:
        _log(f"{summary.truncated} text(s) had more tokens than the model's window and were cut to it (counted in "
             f"{args.output}/_manifest.json); --chunk-tokens max embeds them whole, a row per window")  # fmt: skip
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, as a batch system, Kubernetes or ``kill`` stops a job."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the job as Ctrl-C does: the part in flight is dropped (its temporary file
    deleted) and the claim on OUTPUT let go (an object store's lease deleted, so that a job
    rescheduled at once need not wait for it to expire), instead of the process ending on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tokens(value: str) -> int | str:
    if value == "max" or value.isdigit():
        return value if value == "max" else int(value)
    raise argparse.ArgumentTypeError(f"expected a number of tokens or 'max', got {value!r}")


def _log(msg: str) -> None:
    print(f"[embedrt] {msg}", file=sys.stderr, flush=True)

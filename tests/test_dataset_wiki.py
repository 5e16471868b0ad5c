"""Wikitext read as its text (``wiki_text``): a page's prose, lists, headings and tables without its
templates, references, files and categories; a MediaWiki export (Wikipedia's dumps) read a row per
article, the other pages passed over alike by the planning scan and the readers."""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("mwparserfromhell")

from embedrt.dataset import InputError, OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._wiki import Site, is_article, page_row, wikitext_text  # noqa: E402

PAGE = """{{Infobox river
| name = Vltava
| length = 430 km
}}
'''Vltava''' ({{lang|de|Moldau}}; {{IPA-cs|ˈvl̩tava|pron}}) is the longest river in the [[Czech Republic]],<ref>{{cite \
web |url=http://x.cz |title=Rivers}}</ref> running {{convert|430|km|mi}} through [[Bohemia|Bohemian]] lands.<ref \
name="len"/> [[File:Vltava.jpg|thumb|The river in [[Prague]]]]
It is ''called'' the &quot;Czech national river&quot;.<!-- a comment --> See [https://vltava.cz the site] or \
https://example.org.
__NOTOC__
== Course ==
The river rises in the [[Šumava]] and flows:
* north,
* then through [[Prague]].
=== Tributaries ===
{| class="wikitable"
|-
! Name !! Length
|-
| [[Lužnice]] || {{nowrap|208 km}}
|-
| Otava || 113 km
|}
The formula <math>x^2</math> is not text.
== See also ==
* [[Elbe]]
== References ==
{{reflist}}
=== Sources ===
* A book.
== External links ==
* [http://x.org Site]
== Legacy ==
Songs.
[[Category:Rivers of the Czech Republic]]
[[de:Moldau]]
"""

PAGE_TEXT = (
    "Vltava\n\n"
    "Vltava (Moldau) is the longest river in the Czech Republic, running 430 km through Bohemian lands. It is "
    'called the "Czech national river". See the site or https://example.org.\n\n'
    "Course\n\n"
    "The river rises in the Šumava and flows:\nnorth,\nthen through Prague.\n\n"
    "Tributaries\n\n"
    "Name\tLength\nLužnice\t208 km\nOtava\t113 km\n\n"
    "The formula is not text.\n\n"
    "Legacy\n\n"
    "Songs."
)


def test_wikitext_is_the_text_a_reader_sees() -> None:
    assert wikitext_text(PAGE, "Vltava") == PAGE_TEXT
    # headings inside a tag (a <div> around sections): its reference sections still go; a tag not closed is not shown
    assert wikitext_text("<div>Text.\n== Notes ==\nA note.\n== History ==\nOld.</div>") == "Text.\n\nHistory\n\nOld."
    assert wikitext_text("<div class='x'>Text.<br>More.</span>") == "Text.\nMore."
    assert wikitext_text("A ''b\n\n== See also ==\n* x") == "A b"  # an italic left open: no tag holds the rest
    # the apparatus by the titles other Wikipedias give it, at level 2 only (a country's "Literatur" is text)
    for title in ("Einzelnachweise", "Liens externes", "Véase también", "Примечания", "脚注", "Przypisy"):
        assert wikitext_text(f"Text.\n== Geschichte ==\nAlt.\n== {title} ==\n* x\n=== Sub ===\ny") == (
            "Text.\n\nGeschichte\n\nAlt."), title
    assert wikitext_text("== Kultur ==\n=== Literatur ===\nGoethe.") == "Kultur\n\nLiteratur\n\nGoethe."
    assert wikitext_text("* one\nTwo.\n\nThree\nfour.") == "one\nTwo.\n\nThree four."
    assert wikitext_text("Run:\n<syntaxhighlight lang=sh>\nmake\nmake install\n</syntaxhighlight>\n<poem>a\nb</poem>") == (
        "Run:\n\nmake\nmake install\n\na\nb")
    # a comment alone on its line goes with its line (one paragraph); a reference's name may hold a slash
    assert wikitext_text("End.<ref name=\"a/b\">x</ref>\n<!-- why\n-->\nNext.<ref name=a/>") == "End. Next."


def test_a_wikis_own_names_for_files_and_categories() -> None:
    site = (b'<mediawiki xml:lang="de">\n  <siteinfo>\n    <namespaces>\n      <namespace key="-2" case="first-letter">'
            b'Medium</namespace>\n      <namespace key="6" case="first-letter">Datei</namespace>\n      <namespace '
            b'key="14" case="first-letter">Kategorie</namespace>\n    </namespaces>\n  </siteinfo>\n')  # fmt: skip
    text = "Die [[Moldau]] [[Datei:M.jpg|mini|Bild]] fließt.[[Kategorie:Fluss]][[:Kategorie:Fluss|Flüsse]]"
    assert wikitext_text(text, None, Site.of_site(site)) == "Die Moldau fließt.Flüsse"
    assert wikitext_text("[[Image:M.jpg|thumb|x]][[Category:C]][[fr:Vltava]][[wikt:river|river]]") == "river"
    assert wikitext_text(text) == "Die Moldau mini|Bild fließt.Kategorie:FlussFlüsse"  # only the canonical names known


def test_a_page_is_an_article_by_its_namespace_and_redirect() -> None:
    assert is_article(b"<page>\n<title>A</title>\n<ns>0</ns>\n<revision><text>#REDIRECT<redirect /></text>")
    assert not is_article(b"<page>\n<title>A</title>\n<ns>0</ns>\n<redirect title='B' />\n<revision>")
    assert not is_article(b"<page>\n<title>Wikipedia:A</title>\n<ns>4</ns>\n<revision>")
    assert not is_article(b"<page>\n<title>A</title>\n<revision>")


SITE = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def _page(i: int) -> tuple[str, str | None]:
    """Page ``i`` of a dump: every third a redirect, every seventh a template, the others articles; and
    its expected text (None: not a row)."""
    title = f"Template:Box {i}" if i % 7 == 3 else f"River {i}"
    ns = 10 if i % 7 == 3 else 0
    redirect = f'    <redirect title="River {i + 1}" />\n' if i % 3 == 1 else ""
    body = f"#REDIRECT [[River {i + 1}]]" if redirect else (
        f"The '''river {i}''' &lt;ref&gt;cite&lt;/ref&gt;flows [[east|eastward]].\n\n== References ==\n"
        f"{{{{reflist}}}}\n[[Category:Rivers]]")
    xml = (f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{100 + i}</id>\n{redirect}    <revision>\n"
           f"      <id>{900 + i}</id>\n      <timestamp>2024-01-{1 + i % 28:02d}T00:00:00Z</timestamp>\n"
           f'      <model>wikitext</model>\n      <format>text/x-wiki</format>\n      <text bytes="9" '
           f'xml:space="preserve">{body}</text>\n    </revision>\n  </page>\n')  # fmt: skip
    article = ns == 0 and not redirect
    return xml, f"River {i}\n\nThe river {i} flows eastward." if article else None


def test_a_mediawiki_dump_is_a_row_per_article(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    pages = [_page(i) for i in range(40)]
    dump = tmp_path / "enwiki-20260101-pages-articles.xml.bz2"
    dump.write_bytes(bz2.compress((SITE + "".join(x for x, _ in pages) + "</mediawiki>\n").encode()))
    want = [(str(100 + i), text) for i, (_, text) in enumerate(pages) if text is not None]
    kw: dict[str, Any] = {"id_column": "id", "keep_columns": "text,title,timestamp,url", "rows_per_part": 4,
                          "progress": False}  # fmt: skip
    s = embed_dataset(dump, tmp_path / "out", tiny_bert_bundle, wiki_text=True, **kw)  # xml_record "page" implied
    assert (s.rows, s.parts, s.bad_rows) == (len(want), -(-len(want) // 4), 0)
    table = pq.read_table(tmp_path / "out")
    assert list(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True)) == want
    assert table.column("title").to_pylist()[:2] == ["River 0", "River 2"]
    assert table.column("timestamp").to_pylist()[0] == "2024-01-01T00:00:00Z"  # the revision's
    assert table.column("url").to_pylist()[:2] == ["https://en.wikipedia.org/wiki/River_0",
                                                   "https://en.wikipedia.org/wiki/River_2"]
    again = embed_dataset(dump, tmp_path / "out", tiny_bert_bundle, wiki_text=True, xml_record="page", **kw)
    assert (again.parts_resumed, again.rows_embedded) == (s.parts, 0)
    with pytest.raises(OutputError, match="option 'wiki'"):  # part of the identity
        embed_dataset(dump, tmp_path / "out", tiny_bert_bundle, xml_record="page", **kw)
    cdc = embed_dataset(dump, tmp_path / "cdc", tiny_bert_bundle, wiki_text=True, content_defined_parts=True, **kw)
    assert cdc.rows == len(want) and pq.read_table(tmp_path / "cdc").column("id").to_pylist() == [i for i, _ in want]
    every = embed_dataset(dump, tmp_path / "pages", tiny_bert_bundle, xml_record="page", **kw)  # without: every page
    assert every.rows == 40
    raw = pages[0][0].encode()
    assert page_row(raw, frozenset({"id", "ns", "url"}))[0] == {"id": "100", "ns": "0", "url": None,
                                                                "text": pages[0][1]}  # no site: no address
    site = Site.of_site(b"<base>https://wiki.example.org/index.php?title=Main_Page</base>")
    assert site.url("Café au lait (drink)/Recipe?") == "https://wiki.example.org/index.php?title=Caf%C3%A9_au_lait_(drink)/Recipe%3F"
    # a history dump's page: its revisions in order, the last one is the page's text now
    old = b"    <revision>\n      <id>1</id>\n      <text>Old [[words]].</text>\n    </revision>\n"
    at = raw.index(b"    <revision>")
    assert page_row(raw[:at] + old + raw[at:])[0]["text"] == pages[0][1]
    assert page_row(raw.replace(b"</revision>", b"</revision>\n" + old.strip(b" ")))[0]["text"] == "River 0\n\nOld words."


def test_a_dumps_parts_read_on_one_stream_with_its_sites_names(tmp_path: Path, tiny_bert_bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset import _storage

    site = SITE.replace(">File<", ">Datei<").replace(">Category<", ">Kategorie<")
    pages = "".join(_page(i)[0].replace("[[Category:Rivers]]", "[[Datei:F.jpg|mini|Bild]][[Kategorie:Fluss]]")
                    for i in range(30))  # fmt: skip
    dump = tmp_path / "dewiki-pages-articles.xml.bz2"
    dump.write_bytes(bz2.compress((site + pages + "</mediawiki>\n").encode()))
    restarts: list[int] = []  # the streams (decompressed from the file's start) each time one starts again
    start = _storage._Decompressed._restart
    monkeypatch.setattr(_storage._Decompressed, "_restart", lambda self, at: (restarts.append(id(self)), start(self, at))[1])
    s = embed_dataset(dump, tmp_path / "out", tiny_bert_bundle, wiki_text=True, rows_per_part=3, keep_columns="text",
                      progress=False)  # fmt: skip
    want = [text for i in range(30) if (text := _page(i)[1]) is not None]
    assert s.parts == 6 and pq.read_table(tmp_path / "out").column("text").to_pylist() == want
    # the scan, the parts (forward on one stream), the site's names (once): no stream for each part, none gone back
    assert len(restarts) == len(set(restarts)) == 3


def test_wikitext_documents_and_rows(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "wiki"
    src.mkdir()
    (src / "Vltava.wiki").write_text(PAGE)
    (src / "notes.md").write_text("== stays ==")
    kw: dict[str, Any] = {"keep_columns": "text", "progress": False}
    embed_dataset(src, tmp_path / "docs", tiny_bert_bundle, documents=True, wiki_text=True, **kw)
    table = pq.read_table(tmp_path / "docs").sort_by("id")
    assert table.column("text").to_pylist() == [PAGE_TEXT.removeprefix("Vltava\n\n"), "== stays =="]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in (("a", PAGE), ("b", "x [[y|z]]"))))
    embed_dataset(rows, tmp_path / "rows", tiny_bert_bundle, wiki_text=True, id_column="id", chunk_tokens="max",
                  chunk_text=True, progress=False)  # fmt: skip
    texts = pq.read_table(tmp_path / "rows").column("chunk_text").to_pylist()
    assert texts[-1] == "x z" and "".join(texts[:-1]).startswith("Vltava (Moldau) is")


def test_wikitext_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    kw: dict[str, Any] = {"progress": False, "wiki_text": True}
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n')
    with pytest.raises(InputError, match=r"html_text \(--html-text\) and wiki_text \(--wiki-text\) each read rows"):
        embed_dataset(rows, tmp_path / "a", tiny_bert_bundle, html_text=True, **kw)
    box = tmp_path / "box.mbox"
    box.write_text("From a@b Thu Jan  1 00:00:00 2024\nSubject: x\n\nbody\n")
    with pytest.raises(InputError, match=r"wiki_text \(--wiki-text\) reads wikitext as its text: documents"):
        embed_dataset(box, tmp_path / "a", tiny_bert_bundle, **kw)
    only_redirects = tmp_path / "r.xml"
    only_redirects.write_text(SITE + _page(1)[0] + _page(3)[0] + "</mediawiki>\n")
    with pytest.raises(InputError, match=r"r.xml has no article: no <page> of the main namespace"):
        embed_dataset(only_redirects, tmp_path / "a", tiny_bert_bundle, **kw)


def test_a_page_its_parser_fails_on_is_a_bad_row(tmp_path: Path, tiny_bert_bundle: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset import _wiki

    real = _wiki.wikitext_text

    def failing(source: str, *args: Any) -> str:
        if "BOOM" in source:
            raise RecursionError("maximum recursion depth exceeded")
        return real(source, *args)

    monkeypatch.setattr(_wiki, "wikitext_text", failing)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a [[b]]"}\n{"text": "BOOM"}\n{"text": "c"}\n')
    s = embed_dataset(rows, tmp_path / "rows", tiny_bert_bundle, wiki_text=True, on_error="null", progress=False)
    assert (s.rows, s.bad_rows) == (3, 1)
    assert s.bad_examples[0]["reason"] == "a wikitext page that its reader failed on (RecursionError: maximum recursion depth exceeded)"
    assert pq.read_table(tmp_path / "rows").column("embedding").null_count == 1
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.wiki").write_text("BOOM")
    (tmp_path / "docs" / "b.wiki").write_text("fine")
    s = embed_dataset(tmp_path / "docs", tmp_path / "docs-out", tiny_bert_bundle, documents=True, wiki_text=True,
                      on_error="skip", progress=False)  # fmt: skip
    assert (s.rows, s.bad_rows, s.written) == (2, 1, 1)

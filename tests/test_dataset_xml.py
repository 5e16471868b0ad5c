"""XML documents read as their text (``xml_text``): the layout from the structure, and what JATS,
TEI, DocBook and feeds hold apart from their text left out."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._xml import xml_text  # noqa: E402

# A PubMed Central article as PMC writes it: no whitespace between elements, metadata first, MathML
# and TeX beside each other, a list inside a paragraph, a table, references at the end.
JATS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.0 20120330//EN" '
    b'"JATS-archivearticle1.dtd">\n'
    b'<article xmlns:mml="http://www.w3.org/1998/Math/MathML" xmlns:xlink="http://www.w3.org/1999/xlink">'
    b"<?properties open_access?><front><journal-meta><journal-id>PLoS One</journal-id><issn>1932-6203</issn>"
    b"<publisher><publisher-name>Public Library of Science</publisher-name></publisher></journal-meta>"
    b'<article-meta><article-id pub-id-type="pmid">23029536</article-id><article-categories><subj-group>'
    b"<subject>Research Article</subject></subj-group></article-categories><title-group><article-title>"
    b"M<italic>m</italic>PPOX inhibits <italic>M. tuberculosis</italic> lipases</article-title>"
    b"<alt-title>Running head</alt-title></title-group><contrib-group><contrib><name><surname>Delorme</surname>"
    b"<given-names>Vincent</given-names></name></contrib></contrib-group><aff>Marseille, France</aff>"
    b"<pub-date><year>2012</year></pub-date><permissions><license><p>CC BY</p></license></permissions>"
    b"<abstract><p>Lipid metabolism&#x000a0;matters.</p></abstract><kwd-group><kwd>lipase</kwd></kwd-group>"
    b"</article-meta></front><body><sec><title>Introduction</title><p>The late promoter (<italic>p</italic>"
    b"<sub><italic>R</italic></sub>') acts [<xref ref-type=\"bibr\" rid=\"B1\">1</xref>], as"
    b'<inline-formula><alternatives><tex-math>\\documentclass{minimal}$x$</tex-math><mml:math><mml:mi>x</mml:mi>'
    b"</mml:math></alternatives></inline-formula> shows:<list><list-item><p>first,</p></list-item><list-item>"
    b"<p>second.</p></list-item></list>Then more.</p><disp-formula><label>(1)</label><tex-math>x</tex-math>"
    b"</disp-formula></sec><sec><title>Results</title><table-wrap><label>Table 1"
    b"</label><caption><p>Strains.</p></caption><table><thead><tr><th>Strain</th><th><bold><italic>n</italic>"
    b"</bold><sup>a</sup></th></tr></thead><tbody><tr><td>IN61</td><td>274</td></tr><tr><td>IN56 (WT)</td>"
    b"<td>230</td></tr></tbody></table><table-wrap-foot><fn><label>a</label><p>Counted.</p></fn></table-wrap-foot>"
    b"</table-wrap></sec></body><back><ack><p>Thanks.</p></ack><ref-list>"
    b"<ref><mixed-citation>Smith J (2001) A paper.</mixed-citation></ref></ref-list></back></article>"
)

JATS_TEXT = (
    "MmPPOX inhibits M. tuberculosis lipases\n\n"
    "Lipid metabolism\xa0matters.\n\n"
    "lipase\n\n"
    "Introduction\n\n"
    "The late promoter (pR') acts [1], as shows:\n\n"
    "first,\n\nsecond.\n\n"
    "Then more.\n\n"
    "Results\n\n"
    "Table 1 Strains.\n\n"  # a label before what it labels; a formula's, with nothing after it, left out
    "Strain\tna\nIN61\t274\nIN56 (WT)\t230\n\n"
    "a Counted.\n\n"
    "Thanks."
)


def test_a_jats_article_is_its_title_abstract_keywords_and_body() -> None:
    assert xml_text(JATS) == (JATS_TEXT, None)


def test_tei_docbook_and_feeds_keep_their_text_not_their_apparatus() -> None:
    tei = (
        b'<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><titleStmt><title>A Letter</title>'
        b"<author>Anon</author></titleStmt><publicationStmt><p>Oxford, 2020</p></publicationStmt></fileDesc>"
        b"</teiHeader><facsimile><graphic url='p1.jpg'/></facsimile><text><body><p>Dear <choice><sic>freind"
        b"</sic><corr>friend</corr></choice>,<lb/>the <del>old</del> news.</p></body></text></TEI>"
    )
    assert xml_text(tei) == ("A Letter\n\nDear friend, the news.", None)
    docbook = (
        b'<article xmlns="http://docbook.org/ns/docbook" version="5.0"><info><title>Manual</title><author>'
        b"<personname>Ann</personname></author><abstract><para>How to.</para></abstract></info><section><title>"
        b"Install</title><para>Run <command>make</command><indexterm><primary>make</primary></indexterm> now."
        b"</para><programlisting>if x:\n    y()\n</programlisting><remark>todo</remark></section></article>"
    )
    assert xml_text(docbook) == ("Manual\n\nHow to.\n\nInstall\n\nRun make now.\n\nif x:\n    y()", None)
    rss = (
        b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Blog</title>'
        b"<link>https://example.org</link><item><title>Post</title><link>https://example.org/1</link><guid>1</guid>"
        b"<description>&lt;p&gt;Hello &amp;amp; &lt;b&gt;bye&lt;/b&gt;&lt;/p&gt;&lt;p&gt;Two&lt;/p&gt;</description>"
        b"</item></channel></rss>"
    )
    assert xml_text(rss) == ("Blog\n\nPost\n\nHello & bye\n\nTwo", None)
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title><id>urn:x</id><entry><title>One</title>'
        b'<link href="https://e.org/1"/><content type="html">&lt;p&gt;A &lt;i&gt;b&lt;/i&gt;&lt;/p&gt;</content>'
        b"</entry></feed>"
    )
    assert xml_text(atom) == ("News\n\nOne\n\nA b", None)


def test_any_other_xml_is_laid_out_by_its_structure() -> None:
    pretty = (  # indentation is not text; a space between two elements on one line is
        b"<doc>\n  <title><italic>E. coli</italic> <bold>growth</bold></title>\n  <para>One\n     two</para>\n"
        b"  <record>\n    <name>Ada</name>\n    <born>1815</born>\n  </record>\n  <!-- a comment -->\n"
        b"  <?pi data?>\n  <para>x<br/>y<screen/> z</para>\n</doc>\n"
    )
    assert xml_text(pretty) == ("E. coli growth\n\nOne two\n\nAda\n\n1815\n\nx y z", None)
    # an entity no DTD here declares, in a document naming an external DTD, is read as HTML defines it
    assert xml_text(b'<!DOCTYPE d SYSTEM "d.dtd"><d>a&nbsp;b &mdash; &unknown;</d>') == ("a\xa0b \u2014 &unknown;", None)
    assert xml_text(b"<d>a&nbsp;b</d>") == ("a\xa0b", None)  # and in one naming none
    assert xml_text('<?xml version="1.0" encoding="ISO-8859-1"?><d>café</d>'.encode("latin-1")) == ("café", None)
    assert xml_text("<d>한국어 텍스트</d>".encode("utf-16")) == ("한국어 텍스트", None)
    # an encoding expat does not know, decoded by Python
    shift_jis = '<?xml version="1.0" encoding="Shift_JIS"?><d>日本語</d>'.encode("shift_jis")
    assert xml_text(shift_jis) == ("日本語", None)
    both = '<?xml version="1.0" encoding="Shift_JIS"?><d><x:p>日本語</x:p></d>'.encode("shift_jis")  # and a prefix
    assert xml_text(both) == ("日本語", None)  # declared nowhere
    utf16 = '<?xml version="1.0" encoding="utf16"?><d>été</d>'.encode("utf-16-be")  # no BOM, a name expat lacks
    assert xml_text(utf16) == ("été", None)
    assert xml_text(b"<rss><channel><itunes:subtitle>Foo</itunes:subtitle><link>x</link></channel></rss>") == (
        "Foo", None)  # a prefix declared nowhere: read by local names (and the feed's link still left out)
    assert xml_text(b"<d><p>cut") == (None, "not well-formed XML (no element found: line 1, column 10)")
    assert xml_text(b"<d><p>x</q></d>") == (None, "not well-formed XML (mismatched tag: line 1, column 10)")
    assert xml_text(b'<?xml version="1.0" encoding="x-no-such"?><d/>') == (
        None, "an XML document in an encoding Python does not know ('x-no-such')")
    laughs = b'<!DOCTYPE d [<!ENTITY a "' + b"x" * 100 + b'">' + b"".join(
        b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(8)) + b"]><d>&i;</d>"
    text, bad = xml_text(laughs)  # a billion laughs: expat stops the expansion
    assert text is None and bad is not None and bad.startswith("not well-formed XML (")


def test_xml_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.nxml").write_bytes(JATS)
    (src / "b.xml.gz").write_bytes(gzip.compress(b"<d><p>one</p><p>two</p></d>"))
    (src / "c.xml").write_bytes(b"<d><p>x</q></d>")
    (src / "d.md").write_text("<p>markdown stays</p>")
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "progress": False, "on_error": "null"}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, xml_text=True, **kw)
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.column("text").to_pylist() == [JATS_TEXT, "one\n\ntwo", None, "<p>markdown stays</p>"]
    with pytest.raises(OutputError, match=r"option 'xml' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    (src / "c.xml").unlink()
    (src / "e.xml").write_bytes('<?xml version="1.0" encoding="ISO-8859-1"?><d>café</d>'.encode("latin-1"))
    embed_dataset(src, tmp_path / "source", tiny_bert_bundle, **kw)  # without the option: its source, if UTF-8
    table = pq.read_table(tmp_path / "source").sort_by("id")
    assert table.column("text").to_pylist()[1] == "<d><p>one</p><p>two</p></d>"
    assert table.column("text").to_pylist()[3] is None  # e.xml: not UTF-8, and the reason names the option
    from embedrt.dataset._readers import _document_text

    assert _document_text(str(src / "e.xml"))[1] == (
        "an XML document (invalid UTF-8 at byte 49): pass --xml-text (xml_text=True) to read its text")


def _pubmed(n: int, broken: int | None = None) -> bytes:
    """A PubMed baseline file of ``n`` articles as NLM writes them (indented, a record's opening tag a
    line), article ``broken`` cut short inside its abstract."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
           '1st January 2019//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n<PubmedArticleSet>\n']
    for i in range(n):
        abstract = (f'        <Abstract>\n          <AbstractText Label="BACKGROUND">Study {i} of &lt;rivers&gt;.</AbstractText>\n'
                    f'          <AbstractText Label="RESULTS">Stones, {i % 7}.</AbstractText>\n'
                    '          <CopyrightInformation>(c) 2020</CopyrightInformation>\n        </Abstract>\n')
        if broken == i:
            abstract = "        <Abstract>\n          <AbstractText>cut\n"
        out.append(
            f'  <PubmedArticle>\n    <MedlineCitation Status="MEDLINE" Owner="NLM">\n      <PMID Version="1">{1000 + i}</PMID>\n'
            f'      <Article PubModel="Print">\n        <Journal>\n          <Title>Journal {i % 3}</Title>\n        </Journal>\n'
            f"        <ArticleTitle>Article <i>{i}</i> on quiet engines.</ArticleTitle>\n{'' if i % 5 == 4 else abstract}"
            '        <AuthorList>\n          <Author><LastName>Ng</LastName></Author>\n        </AuthorList>\n'
            '      </Article>\n      <MeshHeadingList>\n        <MeshHeading><DescriptorName>Rivers</DescriptorName></MeshHeading>\n'
            "      </MeshHeadingList>\n    </MedlineCitation>\n    <PubmedData>\n      <ArticleIdList>\n"
            f'        <ArticleId IdType="pubmed">{1000 + i}</ArticleId>\n      </ArticleIdList>\n    </PubmedData>\n'
            "  </PubmedArticle>\n")
    return "".join([*out, "</PubmedArticleSet>\n"]).encode()


def _pubmed_text(i: int) -> str:
    title = f"Article {i} on quiet engines."
    return title if i % 5 == 4 else f"{title}\n\nBACKGROUND: Study {i} of <rivers>.\n\nRESULTS: Stones, {i % 7}."


def test_xml_records_are_rows(tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedrt.dataset._scan_record as _scan_record
    from embedrt.dataset._xml import record_row

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # its scan kept in OUTPUT at once

    src = tmp_path / "pubmed26n0001.xml.gz"
    src.write_bytes(gzip.compress(_pubmed(23, broken=11)))
    kw: dict[str, Any] = {"xml_record": "PubmedArticle", "id_column": "PMID", "keep_columns": "text,Title,Status",
                          "rows_per_part": 5, "progress": False, "on_error": "null"}  # fmt: skip
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (s.rows, s.bad_rows, s.parts) == (23, 1, 5)
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [str(1000 + i) for i in range(23)]
    texts = table.column("text").to_pylist()
    assert texts[:11] == [_pubmed_text(i) for i in range(11)] and texts[12:] == [_pubmed_text(i) for i in range(12, 23)]
    assert texts[11] is None  # cut short: a bad row; the records after it are read
    assert table.column("Title").to_pylist()[:4] == ["Journal 0", "Journal 1", "Journal 2", "Journal 0"]
    assert set(table.column("Status").to_pylist()) == {None}  # an attribute of an element in it: not a column
    # PubMed's own XML export of a search (a PubmedArticleSet) read as one document: its articles' text
    assert xml_text(_pubmed(5)) == ("\n\n".join(_pubmed_text(i) for i in range(5)), None)
    assert record_row(_pubmed(1).split(b"  <PubmedArticle>")[1].join([b"  <PubmedArticle>", b""]),
                      frozenset({"PMID", "Nope"}))[0] == {"PMID": "1000", "Nope": None, "text": _pubmed_text(0)}
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (again.parts_resumed, again.rows_embedded) == (5, 0)
    with pytest.raises(OutputError, match="xml_records"):  # the records named are part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **{**kw, "xml_record": "PubmedArticle,PubmedBookArticle"})
    assert embed_dataset(src, tmp_path / "out", tiny_bert_bundle, overwrite=True, **{  # its scan not taken for this one's
        **kw, "xml_record": "AbstractText", "id_column": None, "keep_columns": ()}).rows == 2 * (23 - 23 // 5) - 1
    cdc = embed_dataset(src, tmp_path / "cdc", tiny_bert_bundle, content_defined_parts=True, **kw)
    assert cdc.rows == 23 and pq.read_table(tmp_path / "cdc").column("id").to_pylist() == [str(1000 + i) for i in range(23)]
    posts = tmp_path / "Posts.xml"  # a Stack Exchange dump: a row per element, its fields its attributes
    posts.write_bytes(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n  <row Id="1" Title="Why?" Body="&lt;p&gt;'
                      b'Because.&lt;/p&gt;" />\n  <row Id="2" Body="No title" />\n</posts>\n')
    embed_dataset(posts, tmp_path / "posts", tiny_bert_bundle, xml_record="row", id_column="Id",
                  text_template="{Title|untitled}: {Body}", keep_columns="Body", progress=False)
    table = pq.read_table(tmp_path / "posts")
    assert table.column("id").to_pylist() == ["1", "2"]
    assert table.column("Body").to_pylist() == ["<p>Because.</p>", "No title"]
    embed_dataset(posts, tmp_path / "posts-text", tiny_bert_bundle, xml_record="row", id_column="Id", html_text=True,
                  text_template="{Title|untitled}: {Body}", chunk_tokens="max", chunk_text=True, progress=False)
    assert pq.read_table(tmp_path / "posts-text").column("chunk_text").to_pylist() == ["Why?:\n\nBecause.",
                                                                                     "untitled: No title"]


def test_xml_records_open_on_lines_their_name_begins_whole() -> None:
    import numpy as np

    from embedrt.dataset._sources import _opening_by
    from embedrt.dataset._xml import records_opening

    data = b"<rows>\n  <row a='1'/>\n<rowset>\n\t<x:row>\n <row\n  <row>"  # the last line is not whole yet
    begins = np.array([0, 7, 22, 31, 40], np.int64)
    assert _opening_by(records_opening(("row",)), data, begins).tolist() == [False, True, False, True, True]


def test_xml_record_input_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset import InputError

    kw: dict[str, Any] = {"progress": False}
    xml = tmp_path / "set.xml"
    xml.write_bytes(_pubmed(2))
    with pytest.raises(InputError, match=r"set.xml is XML: pass --xml-record NAME \(xml_record=\)"):
        embed_dataset(xml, tmp_path / "a", tiny_bert_bundle, **kw)
    for bad in ("", "Pubmed Article", ["PubmedArticle", 3]):
        with pytest.raises(InputError, match="xml_record .--xml-record. takes XML element names"):
            embed_dataset(xml, tmp_path / "a", tiny_bert_bundle, xml_record=bad, **kw)
    with pytest.raises(InputError, match="has no line that opens a <Record> element"):
        embed_dataset(xml, tmp_path / "a", tiny_bert_bundle, xml_record="Record", **kw)
    one_line = tmp_path / "one.xml"
    one_line.write_bytes(b"<set><PubmedArticle><PMID>1</PMID></PubmedArticle></set>")
    with pytest.raises(InputError, match="has no line that opens a <PubmedArticle> element"):
        embed_dataset(one_line, tmp_path / "a", tiny_bert_bundle, xml_record="PubmedArticle", **kw)
    latin = tmp_path / "latin.xml"
    latin.write_bytes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<set>\n <r>caf\xe9</r>\n</set>\n')
    with pytest.raises(InputError, match="declares the encoding 'ISO-8859-1'; an XML file read a record a row is read"):
        embed_dataset(latin, tmp_path / "a", tiny_bert_bundle, xml_record="r", **kw)
    jsonl = tmp_path / "rows" / "rows.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text('{"text": "a"}\n')
    (jsonl.parent / "meta.xml").write_bytes(b"<meta/>")  # beside rows of another format: not an input
    assert embed_dataset(jsonl.parent, tmp_path / "rows-out", tiny_bert_bundle, **kw).rows == 1
    with pytest.raises(InputError, match=r"xml_record \(--xml-record\) 'r' names the elements of an XML file"):
        embed_dataset(jsonl, tmp_path / "a", tiny_bert_bundle, xml_record="r", **kw)


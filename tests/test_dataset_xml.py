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
    b"<p>second.</p></list-item></list>Then more.</p></sec><sec><title>Results</title><table-wrap><label>Table 1"
    b"</label><caption><p>Strains.</p></caption><table><thead><tr><th>Strain</th><th><bold><italic>n</italic>"
    b"</bold><sup>a</sup></th></tr></thead><tbody><tr><td>IN61</td><td>274</td></tr><tr><td>IN56 (WT)</td>"
    b"<td>230</td></tr></tbody></table></table-wrap></sec></body><back><ack><p>Thanks.</p></ack><ref-list>"
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
    "Table 1\n\nStrains.\n\n"
    "Strain\tna\nIN61\t274\nIN56 (WT)\t230\n\n"
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

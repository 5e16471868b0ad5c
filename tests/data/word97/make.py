"""Makes this folder's Word 97-2003 and RTF test documents: each ``.docx`` written here, then saved
as ``.doc`` (the Word 97 filter) and ``.rtf`` by LibreOffice, so that those files come from a
program other than embedrt. Run from the repository root when they need remaking (LibreOffice
installed):

    python tests/data/word97/make.py && for to in doc rtf; do soffice --headless --convert-to $to \\
        tests/data/word97/*.docx --outdir tests/data/word97; done

The committed ``.doc`` and ``.rtf`` files were made by LibreOffice 7.4.7 (Debian 12's
``libreoffice-writer-nogui``); ``locked.docx`` is ``report.docx`` encrypted with the password
"secret" by msoffcrypto-tool 6.1.0 (``OOXMLFile(source).encrypt("secret", out)``): an OLE2 file.
"""

import io
import zipfile
from pathlib import Path

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS = f'xmlns:w="{W}" xmlns:r="{R}" xmlns:v="urn:schemas-microsoft-com:vml"'
PARTS = {"header1": "header", "footer1": "footer", "comments": "comments", "footnotes": "footnotes", "endnotes": "endnotes"}


def p(*runs: str) -> str:
    return "<w:p>" + "".join(runs) + "</w:p>"


def r(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def table(*rows: list[list[str]]) -> str:
    return "<w:tbl>" + "".join("<w:tr>" + "".join("<w:tc>" + "".join(c) + "</w:tc>" for c in row) + "</w:tr>"
                               for row in rows) + "</w:tbl>"  # fmt: skip


def field(code: str, result: str) -> str:
    return (f'<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve">{code}</w:instrText>'
            f'</w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r>{r(result)}<w:r><w:fldChar w:fldCharType="end"/></w:r>')


def notes(kind: str, *texts: str) -> str:
    separators = (f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
                  f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p>'
                  f"</w:{kind}>")  # fmt: skip
    body = "".join(f'<w:{kind} w:id="{i}"><w:p><w:r><w:{kind}Ref/></w:r>{r(" " + t)}</w:p></w:{kind}>'
                   for i, t in enumerate(texts, 1))  # fmt: skip
    return f"<w:{kind}s {NS}>{separators}{body}</w:{kind}s>"


def docx(body: str, parts: dict[str, str]) -> bytes:
    """A ``.docx`` of ``body`` and the parts ``parts`` (name in ``PARTS`` -> XML)."""
    refs = ""
    if "header1" in parts:
        refs = '<w:headerReference w:type="default" r:id="header1"/><w:footerReference w:type="default" r:id="footer1"/>'
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {NS}><w:body>{body}<w:sectPr>'
                f'{refs}<w:pgSz w:w="12240" w:h="15840"/></w:sectPr></w:body></w:document>')  # fmt: skip
    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
             'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
             'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
             '"/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
             'document.main+xml"/>' + "".join(
                 f'<Override PartName="/word/{n}.xml" ContentType="application/vnd.openxmlformats-officedocument.'
                 f'wordprocessingml.{PARTS[n]}+xml"/>' for n in parts) + "</Types>")  # fmt: skip
    rels = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships">' + "".join(f'<Relationship Id="{n}" Type="{R}/{PARTS[n]}" Target="{n}.xml"/>'
                                             for n in parts) + "</Relationships>")  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", types)
        z.writestr("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
                   f'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{R}/officeDocument" '
                   'Target="word/document.xml"/></Relationships>')  # fmt: skip
        z.writestr("word/_rels/document.xml.rels", rels)
        z.writestr("word/document.xml", document)
        for name, xml in parts.items():
            z.writestr(f"word/{name}.xml", xml)
    return out.getvalue()


# a report: a tracked deletion and insertion, a table with an empty cell, a field, a footnote, Korean and €
REPORT = docx(
    p(r("Quarterly report"))
    + p(r("Sales rose in the north."), "<w:r><w:tab/></w:r>", r("Costs fell"), "<w:r><w:br/></w:r>", r("on a new line."))
    + p(r("A footnote follows"), '<w:r><w:footnoteReference w:id="1"/></w:r>', r(" here."))
    + table([[p(r("Region"))], [p(r("Total"))]], [[p(r("North"))], [p()]], [[p(r("South"))], [p(r("€ 1,200"))]])
    + p(r("Page "), field(" PAGE ", "1"), r(" of the report."))
    + p(r("Kept "), '<w:del w:id="9" w:author="A" w:date="2024-01-01T00:00:00Z"><w:r><w:delText>removed words '
        '</w:delText></w:r></w:del><w:ins w:id="10" w:author="A" w:date="2024-01-01T00:00:00Z">', r("added words"),
        "</w:ins>", r(" end."))
    + p(r("한국어 문장과 café, naïve — “quotes”.")),
    {"footnotes": notes("footnote", "The note text.")},
)
# a plan: what a .doc keeps in stories of their own (a header and footer, a comment, an endnote, a text
# box), a nested table, a cell of two paragraphs, a hyperlink field, a page break, Greek and Russian
PLAN = docx(
    p(r("Annual plan"))
    + p(r("First paragraph of the plan with a comment"), '<w:commentRangeStart w:id="0"/>', r(" on these words"),
        '<w:commentRangeEnd w:id="0"/><w:r><w:commentReference w:id="0"/></w:r>', r("."))
    + p(r("See "), field(' HYPERLINK "https://example.com/plan" ', "the plan online"), r(" for details"),
        '<w:r><w:endnoteReference w:id="1"/></w:r>', r("."))
    + table([[p(r("Goal")), p(r("two lines"))], [p(r("Owner"))]],
            [[p(r("Grow")), table([[p(r("inner a"))], [p(r("inner b"))]], [[p(r("inner c"))], [p(r("inner d"))]]),
              p(r("after inner"))], [p(r("Kim"))]])
    + p(r("Before the break."), '<w:r><w:br w:type="page"/></w:r>', r("After the break."))
    + p(r("A shape holds "), '<w:r><w:pict><v:shape style="width:100pt;height:50pt"><v:textbox><w:txbxContent>'
        + p(r("text in a box")) + "</w:txbxContent></v:textbox></v:shape></w:pict></w:r>", r(" and the text goes on."))
    + p(r("Ελληνικά και русский текст."))
    + p(r("Last paragraph.")),
    {"header1": f"<w:hdr {NS}>{p(r('HEADER TEXT'))}</w:hdr>", "footer1": f"<w:ftr {NS}>{p(r('FOOTER TEXT'))}</w:ftr>",
     "comments": f'<w:comments {NS}><w:comment w:id="0" w:author="A" w:date="2024-01-01T00:00:00Z">'
                 f"{p(r('COMMENT TEXT'))}</w:comment></w:comments>",
     "endnotes": notes("endnote", "The endnote text.")},
)

if __name__ == "__main__":
    here = Path(__file__).parent
    (here / "report.docx").write_bytes(REPORT)
    (here / "plan.docx").write_bytes(PLAN)

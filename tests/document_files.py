"""PDF, Word, PowerPoint and EPUB documents for the tests, written as their writers lay them out (no library needed
to make them); Excel 97-2003 workbooks written with xlwt."""

from __future__ import annotations

from typing import Any


def make_pdf(pages: list[list[str]], password: bool = False, size: tuple[int, int] = (612, 792)) -> bytes:
    """A PDF of ``pages`` (each a list of lines, in Helvetica), laid out as a PDF writer does; with
    ``password``, the standard security handler's dictionary for a user password that is not empty;
    ``size``: the pages' width and height in points (US Letter)."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        escaped = [line.replace("(", "\\(").replace(")", "\\)") for line in lines]
        shown = "".join(f"({line}) Tj 0 -14 Td " for line in escaped)
        stream = f"BT /F1 12 Tf 36 {size[1] - 36} Td {shown}ET"
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {len(objs)} 0 R >>")  # fmt: skip
        kids.append(f"{len(objs)} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    trailer = f"/Size {len(objs) + 1} /Root 1 0 R"
    if password:
        objs.append(f"<< /Filter /Standard /V 1 /R 2 /O <{'11' * 32}> /U <{'22' * 32}> /P -4 >>")
        trailer += f" /Encrypt {len(objs)} 0 R /ID [<{'33' * 16}> <{'33' * 16}>]"
    out, offsets = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", []  # a binary comment: PDF writers mark their files so
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode() + "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    return out + f"trailer\n<< {trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()



def make_scanned_pdf(pdf: bytes, text_pages: tuple[int, ...] = ()) -> bytes:
    """The PDF ``pdf`` as a scanner makes it: each page a picture of it at 150 dpi, without text,
    but the pages ``text_pages`` (indices), kept as they are. Needs pypdfium2 and Pillow."""
    import io

    import pypdfium2

    from_doc, out = pypdfium2.PdfDocument(pdf), pypdfium2.PdfDocument.new()
    for i in range(len(from_doc)):
        if i in text_pages:
            out.import_pages(from_doc, [i])
            continue
        picture = from_doc[i].render(scale=150 / 72).to_pil().convert("L")
        scanned = io.BytesIO()
        picture.save(scanned, "PDF", resolution=150)
        out.import_pages(pypdfium2.PdfDocument(scanned.getvalue()))
    saved = io.BytesIO()
    out.save(saved)
    return saved.getvalue()


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx(body: str, footnotes: tuple[str, ...] = ()) -> bytes:
    """A ``.docx`` whose ``word/document.xml`` has ``body`` (WordprocessingML, prefix ``w``; ``mc``
    for markup compatibility) for its body; ``footnotes``: the notes' texts, in
    ``word/footnotes.xml`` after Word's two separators."""
    import io
    import zipfile

    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="{_W}" '
                f'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><w:body>{body}'
                f'<w:sectPr><w:pgSz w:w="12240" w:h="15840"/></w:sectPr></w:body></w:document>')  # fmt: skip
    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
             'content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
             'officedocument.wordprocessingml.document.main+xml"/></Types>')  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", types)
        z.writestr("word/document.xml", document)
        if footnotes:
            notes = "".join(f'<w:footnote w:id="{i}"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> '
                            f"{text}</w:t></w:r></w:p></w:footnote>" for i, text in enumerate(footnotes, 1))  # fmt: skip
            z.writestr("word/footnotes.xml", f'<w:footnotes xmlns:w="{_W}"><w:footnote w:type="separator" w:id="-1">'
                       '<w:p><w:r><w:separator/><w:t>sep</w:t></w:r></w:p></w:footnote><w:footnote w:type='
                       '"continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:footnote>'
                       f"{notes}</w:footnotes>")  # fmt: skip
    return out.getvalue()


_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
_P = "http://schemas.openxmlformats.org/presentationml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"


def pptx_shape(paragraphs: list[str], placeholder: str | None = None) -> str:
    """A PresentationML shape (prefixes ``p``, ``a``) holding ``paragraphs`` (a ``\\n`` in one is a
    line break), as a placeholder of the type ``placeholder`` ("title", "body", "sldNum" ...)."""
    ph = "" if placeholder is None else f'<p:ph type="{placeholder}"/>'
    paras = "".join(
        "<a:p><a:pPr lvl=\"0\"/>" + '<a:br><a:rPr lang="en-US"/></a:br>'.join(
            f'<a:r><a:rPr lang="en-US" dirty="0"/><a:t>{line}</a:t></a:r>' for line in p.split("\n"))
        + '<a:endParaRPr lang="en-US"/></a:p>' for p in paragraphs)  # fmt: skip
    return (f'<p:sp><p:nvSpPr><p:cNvPr id="2" name="Shape"/><p:cNvSpPr/><p:nvPr>{ph}</p:nvPr></p:nvSpPr><p:spPr/>'
            f'<p:txBody><a:bodyPr/><a:lstStyle/>{paras}</p:txBody></p:sp>')  # fmt: skip


def make_pptx(slides: list[tuple[str, str | None]], order: list[int] | None = None,
              diagrams: dict[int, list[str]] | None = None, charts: dict[int, str] | None = None) -> bytes:  # fmt: skip
    """A ``.pptx`` of ``slides``, each (its shapes' XML, its speaker notes' text or None), in the
    deck's order ``order`` (indices of ``slides``; default as given), laid out as PowerPoint does:
    the deck's slide list through its relationships, notes in a notes slide of their own;
    ``diagrams``: a SmartArt diagram after a slide's shapes (by index), its items' texts in a data
    part of its own, between its connection and presentation points as PowerPoint writes them;
    ``charts``: a chart after a slide's shapes (by index), its ``c:chart`` element's XML (prefixes
    ``c``, ``a``) in a chart part of its own, in a graphic frame as PowerPoint places one."""
    import io
    import zipfile

    def rels(items: list[tuple[str, str, str]]) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="{_PKG}">'
                + "".join(f'<Relationship Id="{i}" Type="{_R}/{t}" Target="{target}"/>' for i, t, target in items)
                + "</Relationships>")  # fmt: skip

    ns = f'xmlns:a="{_A}" xmlns:r="{_R}" xmlns:p="{_P}"'
    tree = '<p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"/>')  # fmt: skip
        order = list(range(len(slides))) if order is None else order
        ids = "".join(f'<p:sldId id="{256 + k}" r:id="rId{k + 2}"/>' for k in order)
        z.writestr("ppt/presentation.xml", f'<?xml version="1.0"?><p:presentation {ns}><p:sldMasterIdLst>'
                   f'<p:sldMasterId id="2147483648" r:id="rId1"/></p:sldMasterIdLst><p:sldIdLst>{ids}</p:sldIdLst>'
                   '<p:sldSz cx="9144000" cy="6858000"/></p:presentation>')  # fmt: skip
        z.writestr("ppt/_rels/presentation.xml.rels", rels([("rId1", "slideMaster", "slideMasters/slideMaster1.xml")]
                   + [(f"rId{k + 2}", "slide", f"slides/slide{k + 1}.xml") for k in range(len(slides))]))  # fmt: skip
        z.writestr("ppt/slideMasters/slideMaster1.xml", f'<p:sldMaster {ns}><p:cSld><p:spTree>{tree}'
                   f'{pptx_shape(["Master title style"], "title")}</p:spTree></p:cSld></p:sldMaster>')  # fmt: skip
        for k, (shapes, notes) in enumerate(slides, 1):
            links = [("rId1", "slideLayout", "../slideLayouts/slideLayout1.xml")]
            items = (diagrams or {}).get(k - 1)
            if items is not None:
                dgm = "http://schemas.openxmlformats.org/drawingml/2006/diagram"
                shapes += (f'<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="9" name="Diagram"/><p:cNvGraphicFramePr/>'
                           f'<p:nvPr/></p:nvGraphicFramePr><a:graphic><a:graphicData uri="{dgm}"><dgm:relIds '
                           f'xmlns:dgm="{dgm}" r:dm="rId3" r:lo="rId4" r:qs="rId5" r:cs="rId6"/></a:graphicData>'
                           f"</a:graphic></p:graphicFrame>")  # fmt: skip
                points = "".join(f'<dgm:pt modelId="{{{i}}}"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:r>'
                                 f'<a:t>{item}</a:t></a:r></a:p></dgm:t></dgm:pt><dgm:pt modelId="{{s{i}}}" '
                                 f'type="sibTrans"><dgm:t><a:p><a:r><a:t>between</a:t></a:r></a:p></dgm:t></dgm:pt>'
                                 for i, item in enumerate(items))  # fmt: skip
                z.writestr(f"ppt/diagrams/data{k}.xml", f'<dgm:dataModel xmlns:dgm="{dgm}" xmlns:a="{_A}"><dgm:ptLst>'
                           f'<dgm:pt modelId="{{doc}}" type="doc"><dgm:t><a:p><a:r><a:t>whole</a:t></a:r></a:p></dgm:t>'
                           f'</dgm:pt>{points}<dgm:pt modelId="{{p}}" type="pres"/></dgm:ptLst></dgm:dataModel>')  # fmt: skip
                links.append(("rId3", "diagramData", f"../diagrams/data{k}.xml"))
            chart = (charts or {}).get(k - 1)
            if chart is not None:
                c = "http://schemas.openxmlformats.org/drawingml/2006/chart"
                shapes += (f'<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="8" name="Chart"/><p:cNvGraphicFramePr/>'
                           f'<p:nvPr/></p:nvGraphicFramePr><p:xfrm/><a:graphic><a:graphicData uri="{c}"><c:chart '
                           f'xmlns:c="{c}" r:id="rId7"/></a:graphicData></a:graphic></p:graphicFrame>')  # fmt: skip
                z.writestr(f"ppt/charts/chart{k}.xml", f'<?xml version="1.0"?><c:chartSpace xmlns:c="{c}" '
                           f'xmlns:a="{_A}" xmlns:r="{_R}"><c:date1904 val="0"/>{chart}</c:chartSpace>')  # fmt: skip
                links.append(("rId7", "chart", f"../charts/chart{k}.xml"))
            z.writestr(f"ppt/slides/slide{k}.xml", f'<?xml version="1.0"?><p:sld {ns}><p:cSld><p:spTree>{tree}'
                       f"{shapes}</p:spTree></p:cSld></p:sld>")  # fmt: skip
            if notes is not None:
                links.append(("rId2", "notesSlide", f"../notesSlides/notesSlide{k}.xml"))
                z.writestr(f"ppt/notesSlides/notesSlide{k}.xml", f'<p:notes {ns}><p:cSld><p:spTree>{tree}'
                           f'{pptx_shape([], "sldImg")}{pptx_shape(notes.split(chr(10)), "body")}'
                           f'{pptx_shape([str(k)], "sldNum")}</p:spTree></p:cSld></p:notes>')  # fmt: skip
            z.writestr(f"ppt/slides/_rels/slide{k}.xml.rels", rels(links))
    return out.getvalue()


def make_epub(chapters: list[tuple[str, str]], title: str = "A Book", encrypted: tuple[str, ...] = (),
              spine: list[int] | None = None) -> bytes:  # fmt: skip
    """An EPUB 3 of ``chapters``, each (its file name under ``OEBPS/text/``, its XHTML body), read in
    the order ``spine`` (indices; default as given), as EPUB writers lay it out: ``mimetype`` first
    and stored, the container naming the package, the navigation document first in the spine;
    ``encrypted``: chapters that ``META-INF/encryption.xml`` lists (DRM)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:'
                   'opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type='
                   '"application/oebps-package+xml"/></rootfiles></container>')  # fmt: skip
        items = "".join(f'<item id="c{k}" href="text/{name.replace(" ", "%20")}" media-type="application/xhtml+xml"/>'
                        for k, (name, _body) in enumerate(chapters))  # fmt: skip
        order = list(range(len(chapters))) if spine is None else spine
        refs = '<itemref idref="nav"/>' + "".join(f'<itemref idref="c{k}"/>' for k in order)
        z.writestr("OEBPS/content.opf", f'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                   f'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
                   f'<dc:identifier id="id">urn:uuid:1</dc:identifier><dc:title>{title}</dc:title></metadata>'
                   f'<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
                   f'<item id="css" href="style.css" media-type="text/css"/>{items}</manifest>'
                   f"<spine>{refs}</spine></package>")  # fmt: skip
        z.writestr("OEBPS/nav.xhtml", "<html><body><nav><ol><li>Contents</li></ol></nav></body></html>")
        z.writestr("OEBPS/style.css", "p { margin: 0 }")
        for name, body in chapters:
            z.writestr(f"OEBPS/text/{name}", '<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/'
                       f'1999/xhtml"><head><title>{title}</title></head><body>{body}</body></html>')  # fmt: skip
        if encrypted:
            refs = "".join(f'<EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"><CipherData><CipherReference '
                           f'URI="OEBPS/text/{n}"/></CipherData></EncryptedData>' for n in encrypted)  # fmt: skip
            z.writestr("META-INF/encryption.xml", f'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:'
                       f'container">{refs}</encryption>')  # fmt: skip
    return out.getvalue()


_X = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def make_xlsx(sheets: list[tuple[str, str | None]], strings: tuple[str, ...] = (), date1904: bool = False) -> bytes:
    """An Excel workbook as Excel lays it out: ``sheets`` in tab order, each (its name, its
    ``<sheetData>`` rows' XML, or None: a chart sheet), the second sheet hidden; ``strings`` its
    shared strings (the first one rich text, with a phonetic guide). Cell styles: 0 General,
    1 built-in date (14), 2 "yyyy-mm-dd hh:mm", 3 "h:mm AM/PM", 4 a currency, 5 built-in date and
    time (22), 6 built-in percent (10), 7 millions with negatives in parentheses, 8 built-in
    scientific (11)."""
    import io
    import zipfile

    out = io.BytesIO()
    kinds = ["worksheet" if rows is not None else "chartsheet" for _n, rows in sheets]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"/>')  # fmt: skip
        hidden, epoch = ' state="hidden"', ' date1904="1"' if date1904 else ""
        listed = "".join(f'<sheet name="{n}" sheetId="{k + 1}" r:id="rId{k + 1}"{hidden * (k == 1)}/>'
                         for k, (n, _rows) in enumerate(sheets))  # fmt: skip
        z.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook xmlns="{_X}" xmlns:r="{_R}"><workbookPr'
                   f"{epoch}/><sheets>{listed}</sheets></workbook>")  # fmt: skip
        rels = "".join(f'<Relationship Id="rId{k + 1}" Type="{_R}/{kind}" Target="{kind}s/sheet{k + 1}.xml"/>'
                       for k, kind in enumerate(kinds))  # fmt: skip
        rels += f'<Relationship Id="rIdS" Type="{_R}/styles" Target="/xl/styles.xml"/>'
        z.writestr("xl/_rels/workbook.xml.rels", f'<?xml version="1.0"?><Relationships xmlns="{_PKG}">{rels}'
                   "</Relationships>")  # fmt: skip
        sis = "".join(f'<si><r><t>{t[:3]}</t></r><r><rPr><b/></rPr><t xml:space="preserve">{t[3:]}</t></r>'
                      f'<rPh sb="0" eb="1"><t>ふりがな</t></rPh></si>' if k == 0 else f"<si><t>{t}</t></si>"
                      for k, t in enumerate(strings))  # fmt: skip
        z.writestr("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst xmlns="{_X}" count="{len(strings)}">{sis}</sst>')
        z.writestr("xl/styles.xml", f'<?xml version="1.0"?><styleSheet xmlns="{_X}"><numFmts count="4">'
                   '<numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ hh:mm"/><numFmt numFmtId="165" '
                   'formatCode="[$-409]h:mm\\ AM/PM;@"/><numFmt numFmtId="166" formatCode="&quot;$&quot;#,##0.00"/>'
                   '<numFmt numFmtId="167" formatCode="#,##0.0,,&quot;M&quot;;[Red]\\(#,##0.0,,&quot;M&quot;\\)"/>'
                   '</numFmts><cellXfs count="9"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/><xf '
                   'numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="166"/><xf numFmtId="22"/><xf numFmtId="10"/>'
                   '<xf numFmtId="167"/><xf numFmtId="11"/></cellXfs></styleSheet>')  # fmt: skip
        for k, (_n, rows) in enumerate(sheets):
            if rows is None:
                z.writestr(f"xl/chartsheets/sheet{k + 1}.xml", f'<?xml version="1.0"?><chartsheet xmlns="{_X}"/>')
            else:
                z.writestr(f"xl/worksheets/sheet{k + 1}.xml", f'<?xml version="1.0"?><worksheet xmlns="{_X}">'
                           f'<dimension ref="A1"/><sheetData>{rows}</sheetData><mergeCells count="0"/></worksheet>')  # fmt: skip
    return out.getvalue()


_ODF_NS = {"office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0", "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
           "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0", "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
           "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"}  # fmt: skip


def make_odf(body: str, presentation: bool = False, encrypted: bool = False, spreadsheet: bool = False) -> bytes:
    """An OpenDocument text (or presentation, or spreadsheet) whose ``content.xml`` body is ``body``
    (prefixes ``office``, ``text``, ``table``, ``draw``, ``presentation``), laid out as LibreOffice
    writes it; ``encrypted``: its manifest says ``content.xml`` is encrypted."""
    import io
    import zipfile

    kind = "presentation" if presentation else "spreadsheet" if spreadsheet else "text"
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in _ODF_NS.items())
    manifest = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
    secret = '<manifest:encryption-data manifest:checksum-type="SHA1/1K"/>' if encrypted else ""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), f"application/vnd.oasis.opendocument.{kind}", zipfile.ZIP_STORED)
        z.writestr("content.xml", f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.3">'
                   f"<office:automatic-styles/><office:body><office:{kind}>{body}</office:{kind}></office:body>"
                   "</office:document-content>")  # fmt: skip
        z.writestr("META-INF/manifest.xml", f'<manifest:manifest xmlns:manifest="{manifest}"><manifest:file-entry '
                   f'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.{kind}"/>'
                   f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">{secret}'
                   "</manifest:file-entry></manifest:manifest>")  # fmt: skip
    return out.getvalue()


def make_xls(sheets: list[tuple[str, list[tuple[int, int, Any, str | None]]]], date1904: bool = False) -> bytes:
    """An Excel 97-2003 workbook (xlwt): each sheet's name and its cells (row and column from 0, value,
    number format or None)."""
    import io

    import xlwt

    book = xlwt.Workbook()
    book.dates_1904 = date1904
    for name, cells in sheets:
        sheet = book.add_sheet(name)
        for row, column, value, fmt in cells:
            if fmt is None:
                sheet.write(row, column, value)
            else:
                sheet.write(row, column, value, xlwt.easyxf(num_format_str=fmt))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()

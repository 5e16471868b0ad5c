"""PDF and Word documents for the tests, written as their writers lay them out (no library needed
to make them)."""

from __future__ import annotations


def make_pdf(pages: list[list[str]], password: bool = False) -> bytes:
    """A PDF of ``pages`` (each a list of lines, in Helvetica), laid out as a PDF writer does; with
    ``password``, the standard security handler's dictionary for a user password that is not empty."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        escaped = [line.replace("(", "\\(").replace(")", "\\)") for line in lines]
        shown = "".join(f"({line}) Tj 0 -14 Td " for line in escaped)
        stream = f"BT /F1 12 Tf 72 720 Td {shown}ET"
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
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



_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx(body: str) -> bytes:
    """A ``.docx`` whose ``word/document.xml`` has ``body`` (WordprocessingML, prefix ``w``; ``mc``
    for markup compatibility) for its body."""
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
    return out.getvalue()

"""Makes this folder's PowerPoint 97-2003 test deck: ``deck.pptx`` written by python-pptx (its
default template), then saved as ``deck.ppt`` by LibreOffice (the PowerPoint 97 filter), so the
binary file comes from a program other than embedrt; the picture of the first slide that
LibreOffice stores in the file's summary information is blanked (the stream keeps its size), which
leaves 590 KB of zeros. Run from the repository root when it needs remaking (python-pptx and
LibreOffice installed):

    python tests/data/ppt97/make.py tests/data/ppt97/deck.pptx && soffice --headless --convert-to ppt \\
        tests/data/ppt97/deck.pptx --outdir tests/data/ppt97 && python tests/data/ppt97/make.py --blank \\
        tests/data/ppt97/deck.ppt

The committed ``deck.ppt`` was made by LibreOffice 7.4.7 (Debian 12's ``libreoffice-impress-nogui``)
from a deck of python-pptx 1.0.2.
"""

import sys


def deck(path: str) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[1])  # title and content
    first.shapes.title.text = "Quarterly review"
    body = first.placeholders[1].text_frame
    body.text = "Revenue up"
    body.add_paragraph().text = "Costs down\vsharply"  # a line break inside a paragraph
    box = first.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1))
    box.text_frame.text = "A free text box with 한국어 and café €"
    first.notes_slide.notes_text_frame.text = "Mention the office.\nThen the numbers."
    hidden = prs.slides.add_slide(prs.slide_layouts[5])  # title only, hidden: read all the same
    hidden.shapes.title.text = "A hidden slide"
    hidden._element.set("show", "0")
    prs.slides.add_slide(prs.slide_layouts[6])  # blank
    last = prs.slides.add_slide(prs.slide_layouts[5])
    last.shapes.title.text = "Third"
    table = last.shapes.add_table(2, 3, Inches(1), Inches(2), Inches(6), Inches(1.5)).table
    for i, row in enumerate((("Q1", "Q2", "Q3"), ("10", "", "30"))):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    group = last.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(2), Inches(1)).text_frame.text = "In a group"
    prs.save(path)


def blank(path: str) -> None:
    import olefile

    with olefile.OleFileIO(path, write_mode=True) as ole:
        name = "\x05SummaryInformation"
        ole.write_stream(name, bytes(ole.get_size(name)))


if __name__ == "__main__":
    blank(sys.argv[2]) if sys.argv[1] == "--blank" else deck(sys.argv[1])

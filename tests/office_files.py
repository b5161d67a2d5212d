"""Office files, e-books, e-mail and web pages for the format tests, each made by its own
library (openpyxl, python-pptx, ebooklib, python-docx, the standard library's email), with
Chinese, Japanese and English text."""
from __future__ import annotations

import datetime as dt
import io
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Iterable, Sequence

W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def xlsx_bytes(sheets: dict[str, Sequence[Sequence[object]]]) -> bytes:
    """A workbook written by openpyxl: one sheet per name, rows as given (first = header)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def pptx_bytes(slides: Iterable[tuple[str, str, str]], table: list[list[str]] | None = None) -> bytes:
    """A deck written by python-pptx: (title, body, speaker notes) per slide, and an
    optional last slide holding a table."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    if table:
        slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank
        grid = slide.shapes.add_table(len(table), len(table[0]), Inches(1), Inches(1), Inches(6), Inches(2)).table
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def epub_bytes(title: str, chapters: Sequence[tuple[str, str]], spine_order: Sequence[int] | None = None) -> bytes:
    """An EPUB 3 book written by ebooklib: (chapter title, paragraph) per chapter; the
    reading order is `spine_order` (indexes into chapters) when given."""
    import tempfile
    from pathlib import Path

    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("memsys-test-book")
    book.set_title(title)
    book.set_language("zh")
    items = []
    for number, (chapter_title, paragraph) in enumerate(chapters, start=1):
        item = epub.EpubHtml(title=chapter_title, file_name=f"chapter{number}.xhtml")
        item.content = f"<h1>{chapter_title}</h1><p>{paragraph}</p>"
        book.add_item(item)
        items.append(item)
    book.toc = tuple(items)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    order = spine_order if spine_order is not None else range(len(items))
    book.spine = ["nav", *(items[i] for i in order)]
    with tempfile.TemporaryDirectory() as folder:  # ebooklib writes to a file name
        path = Path(folder) / "book.epub"
        epub.write_epub(str(path), book)
        return path.read_bytes()


def eml_bytes(subject: str, sender: str, plain: str | None, html: str | None,
              attachments: Sequence[tuple[str, str, bytes]] = ()) -> bytes:
    """An e-mail built by the standard library: a plain and/or HTML body, attachments as
    (file name, MIME type, bytes)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = "ops@example.com"
    message["Date"] = format_datetime(dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc))
    if plain is not None:
        message.set_content(plain)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for name, mime, data in attachments:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return bytes(message)


def docx_whole_bytes() -> bytes:
    """A Word document made by python-docx with what a real one has: headings two levels
    deep, a table whose row repeats a value, a header, a footer, a footnote and a text box.
    python-docx has no API for footnotes and text boxes, so those are added as the
    WordprocessingML that Word writes (a footnotes part; a text box with its fallback copy)."""
    import docx
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "机密文件 Confidential header"
    document.sections[0].footer.paragraphs[0].text = "第 1 页 footer text"
    document.add_paragraph("Preface before any heading.")
    document.add_heading("1 Overview", level=1)
    document.add_paragraph("本文档介绍安装步骤。")
    document.add_heading("2 Setup", level=1)
    document.add_heading("2.1 Install", level=2)
    install = document.add_paragraph("サーバーに パッケージをインストールします。")
    install._p.append(parse_xml(
        f'<w:r {W_NS}><w:footnoteReference w:id="1"/></w:r>'
    ))
    table = document.add_table(rows=2, cols=3)
    for c, value in enumerate(["Feature", "Linux", "Windows"]):
        table.cell(0, c).text = value
    for c, value in enumerate(["Supported", "Yes", "Yes"]):
        table.cell(1, c).text = value
    box = document.add_paragraph("Anchor paragraph.")
    box._p.append(parse_xml(
        f'<w:r {W_NS} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
        ' xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"'
        ' xmlns:v="urn:schemas-microsoft-com:vml">'
        '<mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wps:wsp><wps:txbx><w:txbxContent>'
        '<w:p><w:r><w:t>文本框里的提示：先备份数据库。</w:t></w:r></w:p>'
        '</w:txbxContent></wps:txbx></wps:wsp></w:drawing></mc:Choice>'
        '<mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent>'
        '<w:p><w:r><w:t>文本框里的提示：先备份数据库。</w:t></w:r></w:p>'
        '</w:txbxContent></v:textbox></v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r>'
    ))
    document.add_heading("2.2 Configure", level=2)
    document.add_paragraph("Edit the configuration file and restart the service.")
    footnotes = (
        f'<w:footnotes {W_NS}>'
        '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
        '<w:footnote w:id="1"><w:p><w:r><w:t>脚注：需要管理员权限。</w:t></w:r></w:p></w:footnote>'
        '</w:footnotes>'
    ).encode()
    part = Part(PackURI("/word/footnotes.xml"), CT.WML_FOOTNOTES, footnotes, document.part.package)
    document.part.relate_to(part, RT.FOOTNOTES)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


MENU = ["Home", "Products", "Pricing", "ホーム", "产品中心"]
FOOTER = "Copyright 2024 Example Corp. All rights reserved. Privacy policy."


def web_page(title: str, heading: str, paragraphs: Sequence[str]) -> str:
    """A saved web page as a browser stores it: navigation menu, cookie banner, the
    article, a sidebar and a footer."""
    menu = "".join(f'<li><a href="/{i}">{item}</a></li>' for i, item in enumerate(MENU))
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<script>window.track = 1;</script></head><body>"
        f'<header><nav class="menu"><ul>{menu}</ul></nav></header>'
        '<div class="cookie-banner">We use cookies. Accept all cookies</div>'
        f"<main><article><h1>{heading}</h1>{body}</article></main>"
        f'<aside class="sidebar"><h3>Related</h3><ul>{menu}</ul></aside>'
        f'<footer><ul>{menu}</ul><p>{FOOTER}</p></footer></body></html>'
    )

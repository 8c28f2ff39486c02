"""Real PDF and DOCX files for tests, written with pypdf and python-docx (no office suite needed).

:func:`make_pdf` writes one text line per ``(font size, text)`` pair with the standard Helvetica font,
one list of lines per page; :func:`make_docx` writes paragraphs with Word's built-in heading styles.
The hostile files (:func:`deep_pdf`, :func:`huge_count_pdf`) are what a crawler meets in the wild.
"""

from __future__ import annotations

import io

Line = tuple[float, str]


def make_pdf(
    pages: list[list[Line]],
    *,
    title: str | None = None,
    outline: list[tuple[str, int, int]] = (),  # type: ignore[assignment]
    password: str | None = None,
) -> bytes:
    """A PDF of ``pages``; ``outline``: (title, page index, level 1-2) bookmarks, in order."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        ops, y = [], 740.0
        for size, text in lines:
            escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {size:g} Tf 72 {y:g} Td ({escaped}) Tj ET")
            y -= size * 1.6
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
    if title:
        writer.add_metadata({"/Title": title})
    parent = None
    for text, page_index, level in outline:
        item = writer.add_outline_item(
            title=text, page_number=page_index, parent=parent if level > 1 else None
        )
        if level == 1:
            parent = item
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def huge_count_pdf(count: int = 10**9) -> bytes:
    """A one-page PDF whose page tree declares ``count`` pages."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, NumberObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([[(11, "One page only.")]]))))
    writer._root_object["/Pages"].get_object()[NameObject("/Count")] = NumberObject(count)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def deep_pdf(depth: int = 200_000) -> bytes:
    """A PDF whose page holds an array nested ``depth`` levels deep (with a correct xref table, so
    that a reader parses the page object and meets the nesting)."""
    nested = b"[" * depth + b"]" * depth
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Bomb " + nested + b" >>",
        b"<< /Length 44 >>\nstream\nBT /F1 11 Tf 72 700 Td (Nested page.) Tj ET\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_docx(blocks: list[tuple[str, str]], *, title: str | None = None) -> bytes:
    """A DOCX of ``(style, text)`` paragraphs: style ``h1``-``h3``, ``title``, ``bullet`` or ``p``."""
    import docx

    document = docx.Document()
    for style, text in blocks:
        if style == "title":
            document.add_heading(text, level=0)
        elif style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        elif style == "bullet":
            document.add_paragraph(text, style="List Bullet")
        else:
            document.add_paragraph(text)
    if title:
        document.core_properties.title = title
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()

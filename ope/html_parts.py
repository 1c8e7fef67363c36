"""The pieces every loopbreak HTML page is made of: the page style, escaped text, tables and
embedded images."""

from __future__ import annotations

import html
from typing import Any

PAGE_STYLE = (  # shared by every loopbreak HTML page
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
)


def escaped(value: Any) -> str:
    """``value`` as HTML text, quotes escaped."""
    return html.escape(str(value), quote=True)


def cell(value: Any) -> str:
    """One table cell: floats to 4 significant digits, None as a dash, text escaped."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escaped(value)


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    """A table: floats to 4 significant digits, None as a dash, every cell escaped."""
    head = "".join(f"<th>{escaped(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_image(png: str, alt: str) -> str:
    """A base64 PNG embedded in the page."""
    return f'<img alt="{escaped(alt)}" src="data:image/png;base64,{png}">'

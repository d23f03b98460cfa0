"""The report as a list of blocks, rendered to Markdown and to one self-contained HTML file.

Blocks: :class:`Heading`, :class:`Paragraph`, :class:`~raysearch.report.tables.Table` and
:class:`Figure`. The HTML embeds every figure as a base64 PNG and uses inline CSS only, so the file
can be mailed or archived on its own and loads no external resource.
"""

from __future__ import annotations

import base64
import html as _html
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from raysearch.report.tables import Table


@dataclass
class Heading:
    """A section title (``level`` 1-3)."""

    level: int
    text: str


@dataclass
class Paragraph:
    """Plain text (no markup); ``note`` paragraphs are shown as a highlighted remark."""

    text: str
    note: bool = False


@dataclass
class Figure:
    """A PNG figure: ``path`` on disk, ``rel`` its path relative to the report folder."""

    path: Path
    rel: str
    caption: str


Block = Union[Heading, Paragraph, Table, Figure]


# -- Markdown -------------------------------------------------------------------------------------

def _md_cell(text: str, bold: bool) -> str:
    t = str(text).replace("|", "\\|").replace("\n", " ")
    return f"**{t}**" if bold and t else t


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table of ``table.display`` (bold cells as ``**x**``)."""
    d = table.display
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(_md_cell(c, False) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for i in range(len(d)):
        cells = []
        for j, c in enumerate(d.columns):
            bold = bool(table.bold.iloc[i][c]) if table.bold is not None and c in table.bold.columns else False
            cells.append(_md_cell(d.iloc[i, j], bold))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(blocks: list[Block]) -> str:
    """The report as Markdown; tables link their CSV, figures their PNG (relative paths)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            out.append(("> " + b.text) if b.note else b.text)
        elif isinstance(b, Table):
            out.append(f"**{b.title}.** {b.caption}" + (f" (CSV: `tables/{b.name}.csv`)" if b.csv else ""))
            out.append(markdown_table(b))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.rel})")
            out.append(f"*{b.caption}*")
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown report block {type(b).__name__}")
    return "\n\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { border-bottom: 2px solid #345; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccd; }
table { border-collapse: collapse; margin: .6em 0 1.4em 0; font-size: 13px; }
th, td { border: 1px solid #c8ccd4; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #eef1f6; }
td:first-child, th:first-child { text-align: left; }
p.caption { font-size: 13px; margin: 1.2em 0 .3em 0; color: #333; max-width: 900px; }
table.kv td { text-align: left; white-space: normal; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: .4em .8em; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; border: 1px solid #dde; }
figcaption { font-size: 13px; color: #333; }
.scroll { overflow-x: auto; }
"""


def html_table(table: Table) -> str:
    """An HTML ``<table>`` with caption; cells escaped, bold cells in ``<b>``."""
    d = table.display
    e = _html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in d.columns)
    rows = []
    for i in range(len(d)):
        cells = []
        for j, c in enumerate(d.columns):
            text = e(str(d.iloc[i, j]))
            if table.bold is not None and c in table.bold.columns and bool(table.bold.iloc[i][c]) and text:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    csv = f" <i>(tables/{e(table.name)}.csv)</i>" if table.csv else ""
    cap = f'<p class="caption"><b>{e(table.title)}.</b> {e(table.caption)}{csv}</p>'
    cls = "" if table.csv else ' class="kv"'
    return (f'{cap}<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no external links."""
    e = _html.escape
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lvl = min(max(b.level, 1), 4)
            body.append(f"<h{lvl}>{e(b.text)}</h{lvl}>")
        elif isinstance(b, Paragraph):
            body.append(f'<p class="note">{e(b.text)}</p>' if b.note else f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            body.append(html_table(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(b.caption)} <i>({e(b.rel)})</i></figcaption></figure>")
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown report block {type(b).__name__}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )

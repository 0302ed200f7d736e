"""A report as Markdown (`report.md`, the PNGs beside it) and as one self-contained HTML page
(`report.html`: styles inline, figures embedded as data URIs, so it opens from disk or as an MLflow
artifact with nothing else)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field

from orchestrator.report.tables import Table


@dataclass
class Section:
    heading: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, PNG path)
    text: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a bulleted list, after the text


@dataclass
class Report:
    title: str
    preamble: list[str]
    sections: list[Section]


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    return lines + ["| " + " | ".join(row) + " |" for row in table.rows]


def table_markdown(table: Table, published: bool = True) -> str:
    """One table as Markdown: title, table, notes, then (with `published`) the published table beside it."""
    lines = [f"**{table.title}**", ""] + _md_table(table) + [""]
    lines += [f"- {note}" for note in table.notes] + ([""] if table.notes else [])
    if published and table.published is not None and table.published.rows:
        lines += [f"*{table.published.title}*", ""] + _md_table(table.published) + [""]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""] + report.preamble + [""]
    for section in report.sections:
        lines += [f"## {section.heading}", ""] + section.text + ([""] if section.text else [])
        lines += [f"- {item}" for item in section.items] + ([""] if section.items else [])
        lines += [table_markdown(table) for table in section.tables]
        lines += [f"![{caption}]({os.path.basename(path)})\n" for caption, path in section.figures]
    return "\n".join(lines).rstrip() + "\n"


def _html_table(table: Table, css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_section(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.heading)}</h2>"] + [f"<p>{html.escape(t)}</p>" for t in section.text]
    if section.items:
        parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in section.items) + "</ul>")
    for table in section.tables:
        parts.append(f"<h3>{html.escape(table.title)}</h3>")
        parts.append('<div class="pair">' + _html_table(table, "ours"))
        if table.published is not None and table.published.rows:
            parts.append(f'<div><h4>{html.escape(table.published.title)}</h4>'
                         f'{_html_table(table.published, "paper")}</div>')
        parts.append("</div>")
        if table.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")
    for caption, path in section.figures:
        with open(path, "rb") as png:
            data = base64.b64encode(png.read()).decode()
        parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join(parts)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 1.5em 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f2f2f2; } table.paper { color: #555; } h4 { margin: 0.3em 0; font-weight: normal; }
.pair { display: flex; flex-wrap: wrap; align-items: flex-start; } li { font-size: 13px; color: #555; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; } img { max-width: 100%; }
"""


def page(report: Report) -> str:
    body = "\n".join(_html_section(section) for section in report.sections)
    preamble = "".join(f"<p>{html.escape(line)}</p>" for line in report.preamble)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(report.title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>{preamble}\n{body}"
            "</body></html>\n")

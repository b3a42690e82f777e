"""The HTML report: the Markdown report rendered as a standalone page."""

from __future__ import annotations

from approxtvm.explore.report import markdown_to_html


def test_markdown_to_html_renders_what_the_reports_use() -> None:
    html = markdown_to_html(
        "# T\n\ntext `x` **b**\n\n| a | b |\n|---|---:|\n| 1 | 2 |\n\n- one\n- two\n\n![p](p.png)\n\n[r](r.md)", "t<1>"
    )
    assert html.startswith("<!doctype html>") and "<title>t&lt;1&gt;</title>" in html
    assert "<h1>T</h1>" in html and "<code>x</code>" in html and "<strong>b</strong>" in html
    assert "<th>a</th>" in html and '<td style="text-align:right">2</td>' in html and "<li>two</li>" in html
    assert '<img src="p.png" alt="p"' in html and '<a href="r.md">r</a>' in html


def test_raw_html_in_the_markdown_is_escaped() -> None:
    assert "<script>" not in markdown_to_html("a <script>alert(1)</script> b", "t")

"""Render the plain-text spec sheets in pdf_sources/ as PDFs in specs/ (fpdf2).

    python examples/cars/make_pdf.py

The generated PDFs are committed, so indexing the example needs no fpdf2.
A line that ends a paragraph and has no colon is a section heading.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).parent
FIXED_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def render(source: Path, target: Path) -> None:
    lines = source.read_text(encoding="utf-8").splitlines()
    pdf = FPDF(format="A4")
    # A fixed date: regenerating an unchanged sheet gives the same bytes, so re-indexing skips it.
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(lines[0])
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.multi_cell(0, 9, lines[0], new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for previous, line in itertools.pairwise(lines):
        heading = line and ":" not in line and previous == ""
        pdf.set_font("Helvetica", style="B" if heading else "", size=13 if heading else 11)
        if line:
            pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.ln(3)
    pdf.output(str(target))


def main() -> None:
    for source in sorted((HERE / "pdf_sources").glob("*.txt")):
        target = HERE / "specs" / f"{source.stem}.pdf"
        render(source, target)
        print(f"wrote {target.relative_to(HERE)}")


if __name__ == "__main__":
    main()

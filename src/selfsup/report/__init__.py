"""`selfsup report RUN`: a static HTML page with the run's plots; `selfsup report RUNS/`: an index page
comparing every run in a folder.

`build` writes the pages (`make_report`, `make_index`), `plots` draws their pictures.
"""
from selfsup.report.build import make_index, make_report

__all__ = ["make_index", "make_report"]

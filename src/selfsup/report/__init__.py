"""`selfsup report RUN`: a static HTML page with the run's plots.

`build` writes the page (`make_report`), `plots` draws its pictures.
"""
from selfsup.report.build import make_report

__all__ = ["make_report"]

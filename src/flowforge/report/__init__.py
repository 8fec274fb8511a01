"""``flowforge report RUN [RUN...]``: one static, self-contained HTML page per run, or one
page comparing several runs.

The page holds a summary table (one row per run), and for each run its headline numbers, why
it stopped, the data's names, its yardstick (the flow beside baselines fitted on the same rows,
:mod:`flowforge.report.yardstick`), its figures (the PNGs of ``plots/``, inlined as data
URIs, with links to the SVGs beside them when the page is written into the run), its training
curves as a table, its config, the versions that trained it and wrote the page, and the
commands that made it. Nothing is fetched when the page is opened: no server, no CDN, no
script. The HTML comes from a Jinja2 template
(``templates/report.html.j2``) with autoescaping on.
"""

from flowforge.report.page import RunReport, collect_run, render_report, write_report

__all__ = ["RunReport", "collect_run", "render_report", "write_report"]

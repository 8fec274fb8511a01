"""A mkdocs hook that fails the strict build on Sphinx markup left as text in a built page.

``docs/hooks/sphinx_markup.py`` rewrites the docstrings' roles and directives; one it misses
(a new role, a directive it does not know, a formula or fence indented wrongly) would show as
``:class:`Flow```, ``.. math::``, ``$$`` or a code fence.
Each is a warning, so ``mkdocs build --strict`` (``make docs``) fails and names the page.
Text inside ``<code>`` and ``<pre>`` (a page that shows the markup on purpose) is not read.
"""

from __future__ import annotations

import logging
import re

from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.unrendered")

_QUOTED = re.compile(r"<(pre|code)\b[^>]*>.*?</\1>", re.DOTALL)
_LEFTOVER = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|math|ref|doc|term):(?=<code>|`)"
    r"|\.\. [a-z-]+::"
    r"|\$\$|```"  # a display formula or a code fence that Markdown did not take as one
)


def leftovers(html: str) -> list[str]:
    """The Sphinx roles and directives left as text in ``html``, each with what follows it."""
    # blank what is quoted, keeping the offsets and the tags (a role shows as ":class:<code>")
    masked = _QUOTED.sub(
        lambda m: re.sub(r"(?<=>)[^<>]+(?=<)", lambda t: " " * len(t[0]), m[0]), html
    )
    return [html[m.start() : m.end() + 40] for m in _LEFTOVER.finditer(masked)]


def on_post_page(output: str, page: Page, **kwargs: object) -> str:
    for found in leftovers(output):
        log.warning("%s: Sphinx markup left as text: %r", page.file.src_uri, found)
    return output

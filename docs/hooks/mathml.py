"""A mkdocs hook that renders the site's LaTeX as MathML while the site is built.

pymdownx.arithmatex (generic mode) marks ``$x$`` and ``$$ ... $$`` in the guides, and the
docstrings' ``:math:`` and ``.. math::`` once ``docs/hooks/sphinx_markup.py`` has rewritten
them, as ``<span class="arithmatex">\\(x\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``. This hook replaces each with the MathML that
latex2mathml (pure Python, the ``docs`` extra) makes of it, which browsers draw without a
script, a font download or a CDN. A formula that cannot be converted is a warning, so
``mkdocs build --strict`` fails and names it instead of showing LaTeX source.
"""

from __future__ import annotations

import html
import logging
import re

from latex2mathml.converter import convert
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.mathml")

_MATH = re.compile(
    r'<span class="arithmatex">\\\((?P<inline>.*?)\\\)</span>'
    r'|<div class="arithmatex">\\\[(?P<block>.*?)\\\]</div>',
    re.DOTALL,
)
# LaTeX that latex2mathml leaves as source, and what means the same to it
_SPELLINGS = ((re.compile(r"\\arg(?![a-zA-Z])"), r"\\operatorname{arg}"),)
_TEXT = re.compile(r"(<mtext[^>]*>)(.*?)(</mtext>)", re.DOTALL)
_TAGS = re.compile(r"<[^>]*>")


def mathml(tex: str, display: str) -> str:
    """The MathML for ``tex`` (``display`` "inline" or "block"); ValueError if it has LaTeX
    that latex2mathml does not know (it would show as source)."""
    for pattern, spelling in _SPELLINGS:
        tex = pattern.sub(spelling, tex)
    try:
        out = convert(tex, display=display)
    except Exception as error:  # latex2mathml raises its own exception types, or IndexError
        raise ValueError(f"{type(error).__name__}: {error}") from None
    # \_ inside \texttt{} and \text{} stays escaped
    out = _TEXT.sub(lambda m: m[1] + re.sub(r"\\([_%&#$])", r"\1", m[2]) + m[3], out)
    if "\\" in html.unescape(_TAGS.sub("", out)):
        raise ValueError("a command latex2mathml does not know is left as source")
    return out


def on_page_content(html_text: str, page: Page, **kwargs: object) -> str:
    def replace(match: re.Match[str]) -> str:
        display = "inline" if match["inline"] is not None else "block"
        tex = html.unescape(match["inline"] if match["inline"] is not None else match["block"])
        try:
            return mathml(tex.strip(), display)
        except ValueError as error:
            log.warning(
                "%s: cannot render the formula %r as MathML (%s)", page.file.src_uri, tex, error
            )
            return match[0]

    return _MATH.sub(replace, html_text)

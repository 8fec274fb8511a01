"""A griffe extension that turns the docstrings' Sphinx markup into what the API site renders.

The docstrings are written for reading in an editor and in ``help()``, with Sphinx's roles and
directives; the site is Markdown (mkdocstrings). Before anything is rendered, every docstring of
the loaded package is rewritten (the source files are not touched):

- ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:``,
  ``:obj:`` become cross-references. The target is looked up the way a reader would: a leading
  ``.`` is relative to the current package; a name is looked up in the object's own scope, then
  in each enclosing class, module and package; ``flowforge.x.y`` is absolute. ``~`` shows the
  last component only. A name found in the package becomes an *optional* autorefs
  cross-reference to its canonical path: a link where that object has a page, code with the path
  as tooltip where it has none (a private helper, ``flowforge.serve``). A name not found in the
  package (``ValueError``, torch's ``state_dict``, a typo) renders as code. Either way no role is
  left as literal text.
- ``.. math::`` blocks become ``$$ ... $$`` (one per paragraph) and ``:math:`x``` becomes
  ``$x$``: pymdownx.arithmatex picks them up and ``docs/hooks/mathml.py`` renders them.
- A literal block (a paragraph ending in ``::``) and ``.. code-block:: LANG`` become fenced
  code, and the ``::`` becomes ``:`` as Sphinx shows it.

Loaded by mkdocstrings through ``extensions:`` in mkdocs.yml; :func:`rewrite` is the pure text
transformation, tested in tests/test_docs_site.py.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator

import griffe

ROLES = ("class", "func", "meth", "mod", "data", "attr", "exc", "obj", "const")
_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<body>[^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::[ \t]*(?P<rest>.*)$")
_CODE_DIRECTIVE = re.compile(
    r"^(?P<indent>\s*)\.\. (?:code-block|code|sourcecode)::[ \t]*(?P<lang>\S*)\s*$"
)
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)

Resolver = Callable[[str, str], "str | None"]
"""``resolver(role, target)``: the identifier a role's target names, or None where none."""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``base`` (blank lines inside kept),
    dedented, and the index after the last of them."""
    end = start
    last = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
        if lines[end].strip():
            last = end + 1
        end += 1
    body = textwrap.dedent("\n".join(lines[start:last])).split("\n") if last > start else []
    while body and not body[0].strip():
        body.pop(0)
    return body, last


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _role(match: re.Match[str], resolver: Resolver) -> str:
    role, body = match["role"], match["body"].strip()
    if role == "math":
        return "$" + " ".join(body.split("\n")).strip() + "$"
    if role not in ROLES:
        return match[0]
    explicit = _EXPLICIT_TITLE.match(body)
    if explicit:
        title, target = explicit["title"], explicit["target"].strip()
    else:
        target = body
        title = body.lstrip("~").lstrip(".")
        if body.startswith("~"):
            title = title.rsplit(".", 1)[-1]
    target = target.lstrip("~")
    identifier = resolver(role, target)
    code = f"`{title}`"
    if identifier is None:
        return code
    return f'<autoref identifier="{identifier}" optional>{code}</autoref>'


def _prose(lines: list[str], resolver: Resolver) -> list[str]:
    text = "\n".join(lines)
    return _ROLE.sub(lambda m: _role(m, resolver), text).split("\n")


def _fenced(indent: str, lang: str, body: list[str]) -> list[str]:
    return [
        "",
        indent + "```" + lang,
        *[(indent + b) if b else "" for b in body],
        indent + "```",
        "",
    ]


def rewrite(text: str, resolver: Resolver) -> str:
    """The Markdown for a docstring written with Sphinx roles and directives (see the module)."""
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        math = _MATH_DIRECTIVE.match(line)
        code = _CODE_DIRECTIVE.match(line)
        literal = (
            line.rstrip().endswith("::")
            and not (math or code)
            and bool(_block(lines, i + 1, _indent(line))[0])
        )
        if not (math or code or literal):
            prose.append(line)
            i += 1
            continue
        if literal:
            lead = line.rstrip()[:-2]
            if lead.strip():
                prose.append(lead if lead.endswith(" ") else lead + ":")
        out += _prose(prose, resolver)
        prose = []
        body, i = _block(lines, i + 1, _indent(line))
        # Markdown nests by 4 spaces (a list item's continuation); reST by any, e.g. 2 under "- "
        indent = " " * (_indent(line) // 4 * 4)
        if math:
            first = math["rest"].strip()
            for paragraph in _paragraphs(([first] if first else []) + body):
                out += [
                    "",
                    indent + "$$",
                    *[indent + p.strip() for p in paragraph],
                    indent + "$$",
                    "",
                ]
        else:
            out += _fenced(indent, code["lang"] if code else "", body)
    out += _prose(prose, resolver)
    return "\n".join(out)


def _lookup(scope: griffe.Object | griffe.Alias, dotted: str, role: str) -> str | None:
    """The canonical path of ``dotted`` looked up from ``scope``, or None."""
    current = scope
    try:
        for part in dotted.split("."):
            members = current.all_members if current.is_class else current.members
            if part not in members:
                return None
            current = members[part]
        if current.is_module and role != "mod" and dotted.rsplit(".", 1)[-1] in current.members:
            # ``flowforge.runs.load`` is both a module and the function it exports
            current = current.members[dotted.rsplit(".", 1)[-1]]
        path = current.canonical_path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None  # an import from outside the package: torch's, the standard library's
    return path if path.split(".")[0] == scope.package.name else None


def resolver_for(obj: griffe.Object) -> Resolver:
    """Looks names up as a reader of ``obj``'s docstring would (see the module)."""

    def resolve(role: str, target: str) -> str | None:
        if target.startswith("."):
            name = target.lstrip(".")
            module = obj.module
            scope: griffe.Object | None = module if module.is_init_module else module.parent
        else:
            name = target
            scope = obj if (obj.is_class or obj.is_module) else obj.parent
        while scope is not None:
            found = _lookup(scope, name, role)
            if found:
                return found
            scope = scope.parent
        head, _, rest = target.partition(".")
        if head == obj.package.name and rest:
            return _lookup(obj.package, rest, role)
        return None

    return resolve


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxMarkup(griffe.Extension):
    """Rewrites every docstring of a loaded package with :func:`rewrite`."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, resolver_for(obj))

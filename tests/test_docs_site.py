"""The API site renders the docstrings (issue 26 item 6): roles become links or code, math
becomes MathML, no Sphinx markup is left as text, every entry point has a page and every object
is documented once.

The fast tests check the build's own code in ``docs/hooks/``; the slow one builds the site with
``mkdocs build --strict`` (as ``make docs`` does) and reads the pages it wrote.
"""

import importlib.util
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOOKS = REPO / "docs" / "hooks"

griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra (mkdocstrings)")


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sphinx_markup = _hook("sphinx_markup")
unrendered = _hook("unrendered")


@pytest.fixture(scope="module")
def package():
    return griffe.load("flowforge", search_paths=[str(REPO / "src")], resolve_aliases=True)


def _resolve(package, path: str, role: str, target: str):
    obj = package if path == "flowforge" else package[path.removeprefix("flowforge.")]
    return sphinx_markup.resolver_for(obj)(role, target)


def test_roles_become_cross_references_or_code():
    known = {"Flow": "flowforge.flows.Flow", "flowforge.transforms.Transform": "x.Transform"}
    text = (
        "A :class:`Flow` and a :class:`~flowforge.transforms.Transform`, not a\n"
        ":class:`ValueError`; :func:`the loader <Flow>`, :py:meth:`Flow`."
    )
    out = sphinx_markup.rewrite(text, lambda role, target: known.get(target))
    assert out == (
        'A <autoref identifier="flowforge.flows.Flow" optional>`Flow`</autoref> and a '
        '<autoref identifier="x.Transform" optional>`Transform`</autoref>, not a\n'
        "`ValueError`; "
        '<autoref identifier="flowforge.flows.Flow" optional>`the loader`</autoref>, '
        '<autoref identifier="flowforge.flows.Flow" optional>`Flow`</autoref>.'
    )


def test_math_and_literal_blocks_become_markdown():
    text = (
        "Where :math:`\\sigma =\n\\|W\\|_2`, the map\n\n"
        "    .. math:: \\hat W = W / \\sigma\n\n"
        "    .. math::\n        a = b\n\n        c = d\n\n"
        "Usage::\n\n    x = :class:`Flow`\n\nText ::\n\n    y\n\n"
        "- item\n\n  .. math:: e\n\n"
        ".. code-block:: text\n\n    a --> b\n\nAfter."
    )
    out = sphinx_markup.rewrite(text, lambda role, target: None)
    blocks = [b.strip() for b in re.split(r"\n\s*\n", out) if b.strip()]
    assert blocks == [
        "Where $\\sigma = \\|W\\|_2$, the map",
        "$$\n    \\hat W = W / \\sigma\n    $$",
        "$$\n    a = b\n    $$",
        "$$\n    c = d\n    $$",
        "Usage:",
        "```\nx = :class:`Flow`\n```",  # code is shown as written
        "Text",
        "```\ny\n```",
        "- item",
        "$$\ne\n$$",  # at 0: Markdown nests by 4 spaces
        "```text\na --> b\n```",
        "After.",
    ]


@pytest.mark.parametrize(
    ("path", "role", "target", "expected"),
    [
        ("flowforge", "class", "Flow", "flowforge.flows.Flow"),  # an import of the module
        (
            "flowforge",
            "class",
            "flowforge.transforms.Transform",
            "flowforge.transforms.base.Transform",
        ),
        ("flowforge.runs", "mod", ".directory", "flowforge.runs.directory"),  # relative
        ("flowforge.runs.build", "mod", ".directory", "flowforge.runs.directory"),  # a sibling
        ("flowforge.runs", "func", "load", "flowforge.runs.load.load"),  # not the module
        ("flowforge.runs", "mod", ".load", "flowforge.runs.load"),
        # a method from its class's docstring, and from a method of the class
        (
            "flowforge.distributions.GaussianMixture",
            "meth",
            "start",
            "flowforge.distributions.GaussianMixture.start",
        ),
        (
            "flowforge.objectives.base",
            "meth",
            "Objective.evaluate",
            "flowforge.objectives.base.Objective.evaluate",
        ),
        ("flowforge.distributions.GaussianMixture", "class", "ValueError", None),  # outside
        ("flowforge.flows", "class", "Tensor", None),  # torch's
        ("flowforge.flows", "func", "no_such_function", None),
    ],
)
def test_targets_are_looked_up_as_a_reader_would(package, path, role, target, expected):
    assert _resolve(package, path, role, target) == expected


def test_every_docstring_is_rewritten_when_the_package_loads():
    extensions = griffe.load_extensions(sphinx_markup.SphinxMarkup)
    package = griffe.load("flowforge", search_paths=[str(REPO / "src")], extensions=extensions)
    text = package["runs"].docstring.value
    assert ":func:" not in text and ":mod:" not in text
    assert '<autoref identifier="flowforge.runs.training.train_run" optional>`train_run`' in text
    assert "$$" in package["nn.made"].docstring.value


def test_leftover_markup_is_found_outside_code_only():
    html = (
        "<p>A :class:<code>Flow</code> and <code>:class:`Flow`</code>,</p>"
        "<pre><code>.. math::</code></pre><p>.. math:: x</p><p>$$ y $$</p>"
    )
    found = unrendered.leftovers(html)  # each with the 40 characters after it
    assert [f[:17] for f in found] == [
        ":class:<code>Flow",
        ".. math:: x</p><p",
        "$$ y $$</p>",
        "$$</p>",
    ]
    assert unrendered.leftovers("<p>A <a href='#x'><code>Flow</code></a>.</p>") == []


def test_latex_becomes_mathml_or_an_error():
    pytest.importorskip("latex2mathml", reason="latex2mathml comes with the docs extra")
    mathml = _hook("mathml")
    out = mathml.mathml(r"\arg\min_x \texttt{log\_prob}(x)", "block")
    assert out.startswith("<math") and 'display="block"' in out and "log_prob" in out
    assert "\\" not in out
    for tex in (r"\notacommand x", r"\frac{a}{", "x^"):
        with pytest.raises(ValueError):
            mathml.mathml(tex, "inline")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra")
    pytest.importorskip("latex2mathml", reason="latex2mathml comes with the docs extra")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)]
    done = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.slow
def test_built_pages_have_no_sphinx_markup_and_render_math(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        html = page.read_text()
        assert unrendered.leftovers(html) == [], page
        assert 'class="arithmatex"' not in html, page  # every formula became MathML
    api = (site / "api" / "flowforge" / "index.html").read_text()
    assert api.count("<math ") >= 10
    # a role to a documented object is a link to it, here on another page
    link = re.search(
        r'<a class="autorefs autorefs-internal"[^>]*href="([^"]*)"><code>Transform</code>', api
    )
    assert link and link[1] == "../transforms/#flowforge.transforms.Transform"


@pytest.mark.slow
def test_entry_points_have_pages_and_each_object_one(site, package):
    ids: dict[str, list[str]] = defaultdict(list)
    for page in (site / "api").rglob("*.html"):
        for ident in re.findall(
            r'<h\d id="(flowforge[^"]*)" class="doc doc-heading"', page.read_text()
        ):
            obj = package if ident == "flowforge" else package[ident.removeprefix("flowforge.")]
            ids[obj.canonical_path].append(ident)
    for entry in (
        "flowforge.runs.load.load",
        "flowforge.data.files.load_file",
        "flowforge.models.sizing.sized_options",
    ):
        assert entry in ids, entry
    twice = {path: where for path, where in ids.items() if len(where) > 1}
    assert twice == {}
    # flowforge.load is the runs' load, and the page says so with a link
    api = (site / "api" / "flowforge" / "index.html").read_text()
    assert re.search(
        r'href="[^"]*#flowforge\.runs\.load\.load"><code>flowforge\.runs\.load\.load<', api
    )

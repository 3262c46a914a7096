"""README.md, docs/ and studies/README.md: every relative link resolves; README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "studies" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link in a code sample is not a link)."""
    return "\n".join(part for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M)) if i % 2 == 0)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", prose(page.read_text(encoding="utf-8")), flags=re.M)
    return {slug(h) for h in headings}


def links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text(encoding="utf-8")))
        if not re.match(r"[a-z]+:", target)  # http:, https:, mailto:
    ]


def test_pages_exist():
    assert [p.name for p in PAGES[2:]] == [
        "architecture.md", "development.md", "results.md", "scaling.md", "search.md"
    ]  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_slug_matches_github():
    # Checked against the anchors GitHub renders for headings of this kind.
    assert slug("`make demo` (ResNet-style model, real Fashion-MNIST)") == (
        "make-demo-resnet-style-model-real-fashion-mnist"
    )
    assert (
        slug("Compression at <= 1 point of accuracy: hybrid") == "compression-at--1-point-of-accuracy-hybrid"
    )


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/ (at most 250)"


def test_architecture_has_one_line_per_module_and_no_line_for_a_module_that_is_gone():
    package = ROOT / "src" / "lrf_optuna"
    modules = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, flags=re.M))
    assert sorted(modules - rows) == [], "modules without a line in docs/architecture.md"
    assert sorted(rows - modules - {"__init__.py", "factorizers/__init__.py"}) == [], "lines for no module"

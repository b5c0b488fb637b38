"""The documentation: the shape of its pages, and examples that run as printed."""

from __future__ import annotations

import re
from pathlib import Path

import docutils.core
import pytest
from docutils import nodes

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def read_page(page: Path) -> nodes.document:
    """The page as docutils reads it: Sphinx's own directives and roles are
    unknown there, and dropped without a word."""
    return docutils.core.publish_doctree(
        page.read_text(),
        source_path=str(page),
        settings_overrides={"report_level": 5, "halt_level": 5},
    )


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.rst")), ids=lambda page: page.name)
def test_each_page_has_one_title_over_its_sections(page: Path) -> None:
    # A page with several top-level sections has no title of its own: Sphinx's
    # sidebar then lists each section as a page.
    assert read_page(page).get("title"), f"{page.name} has no page title"


def test_each_key_at_a_glance_is_a_data_entry_of_the_reference() -> None:
    # .. data:: entries can be cross-referenced: :data:`REDIS_URL`.
    text = (DOCS / "configuration.rst").read_text()
    at_a_glance = text[text.index("The keys at a glance") : text.index("A typical")]
    keys = set(re.findall(r"REDIS_[A-Z_]*[A-Z]", at_a_glance))
    entries = set(re.findall(r"^(?:\.\. data::| {9}) (REDIS_\w+)$", text, re.M))

    assert len(keys) >= 20
    assert sorted(keys - entries) == []

"""The documentation: the shape of its pages, and examples that run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

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


def test_the_readmes_links_work_from_the_package_page_too() -> None:
    # PyPI shows the README without the files beside it: no relative links.
    links = [
        node["refuri"]
        for node in read_page(ROOT / "README.rst").findall(nodes.reference)
        if "refuri" in node
    ]

    assert len(links) >= 10
    assert [link for link in links if not urlsplit(link).scheme] == []


def literal_blocks(page: Path) -> list[str]:
    return [block.astext() for block in read_page(page).findall(nodes.literal_block)]


def test_the_quickstarts_bad_port_fails_its_app_as_printed(tmp_path: Path) -> None:
    blocks = literal_blocks(DOCS / "quickstart.rst")
    app = next(block for block in blocks if block.startswith("# app.py"))
    bad_port = next(block for block in blocks if "REDIS_PORT" in block)
    printed = blocks[blocks.index(bad_port) + 1]
    (tmp_path / "app.py").write_text(
        app.replace("redis = Redis(app)", f"{bad_port}\nredis = Redis(app)", 1)
    )

    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's module
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.stderr.splitlines()[-1] == printed

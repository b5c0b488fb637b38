"""Sphinx configuration: `sphinx-build -W -b html docs docs/_build/html`."""

import configparser
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# autodoc imports flask_and_redis from the checkout, installed or not.
sys.path.insert(0, str(ROOT))

_metadata = configparser.ConfigParser()
_metadata.read(ROOT / "setup.cfg")

project = "Flask-And-Redis"
author = "Flask-And-Redis contributors"
copyright = "Flask-And-Redis contributors"
release = _metadata["metadata"]["version"]
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
# The build runs offline, so no intersphinx.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False

exclude_patterns = ["_build"]
html_theme = "alabaster"

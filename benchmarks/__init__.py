"""Benchmarks of Flask-And-Redis against raw redis-py and flask-redis.

Run ``python -m benchmarks`` from the root of a checkout (``--help`` for the
options); see docs/performance.rst for what is measured and how.
"""

import sys
from pathlib import Path

# The real-server helpers of the test suite (tests/servers.py), importable as
# "servers"; appended, so they shadow nothing.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

"""The example app's settings; ``FLASK_*`` environment variables override them
(``FLASK_COMMENTS_DB=5``), and so does the mapping given to ``create_app``.

One Redis server, a database for each part of the app. ``REDIS_URL`` names the
server (``python -m example_app`` sets it to its private server when the
environment names none); each prefix without a URL of its own connects there,
to its own database. Give ``REDIS_URL`` without a database number
(``redis://localhost:6379``): a number in a URL wins over the ``*_DB`` keys.
"""

import os

REDIS_URL = os.environ.get("REDIS_URL")

# Comments, as JSON strings in a list.
COMMENTS_DB = 0
COMMENTS_DECODE_RESPONSES = True

# A view counter per page.
COUNTERS_DB = 1
COUNTERS_DECODE_RESPONSES = True

# Flask-Caching, on the client of the CACHE_REDIS prefix: its keys are the
# ones Flask-Caching's own Redis backend reads (CACHE_REDIS_URL, …). It stores
# pickled bytes, so this client does not decode responses.
CACHE_REDIS_DB = 2
CACHE_TYPE = "flask_and_redis.flask_caching_backend"
CACHE_REDIS_CONFIG_PREFIX = "CACHE_REDIS"
CACHE_KEY_PREFIX = "example:"
CACHE_DEFAULT_TIMEOUT = 60

#: How long the statistics page takes to compute, in seconds: the work the
#: cache saves.
STATS_SECONDS = 1.0

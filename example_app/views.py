"""The pages: comments, per-page view counters, a cached statistics page."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from example_app import cache, comments, counters

pages = Blueprint("pages", __name__)

COMMENTS_KEY = "comments"
KEPT_COMMENTS = 1000
SHOWN_COMMENTS = 50
MAX_LENGTH = {"name": 40, "text": 500}
VIEWS_KEY = "views:"  # then the page's path


@pages.before_request
def count_view() -> None:
    # Counted before the view runs, so cached pages are counted too. The
    # blueprint's before_request runs only for its own pages: a 404 (such as
    # /favicon.ico) or a 405 makes no counter.
    if request.method == "GET":
        g.views = counters.incr(VIEWS_KEY + request.path)


@pages.get("/")
def index() -> str:
    latest = comments.lrange(COMMENTS_KEY, 0, SHOWN_COMMENTS - 1)
    return render_template(
        "index.html",
        comments=[json.loads(comment) for comment in latest],
        total=comments.llen(COMMENTS_KEY),
        errors={},
        form={},
    )


@pages.post("/comments")
def add_comment() -> Response | tuple[str, int]:
    form = {name: request.form.get(name, "").strip() for name in MAX_LENGTH}
    errors = {
        name: f"Write 1 to {limit} characters."
        for name, limit in MAX_LENGTH.items()
        if not 0 < len(form[name]) <= limit
    }
    if errors:
        # The comments page again, with its view count; a POST is no view.
        g.views = int(counters.get(VIEWS_KEY + url_for("pages.index")) or 0)
        page = render_template(
            "index.html", comments=[], total=None, errors=errors, form=form
        )
        return page, 400
    form["posted"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with comments.pipeline() as pipe:
        pipe.lpush(COMMENTS_KEY, json.dumps(form))
        pipe.ltrim(COMMENTS_KEY, 0, KEPT_COMMENTS - 1)
        pipe.execute()
    cache.delete("stats")  # the statistics count this comment now
    return redirect(url_for("pages.index"), code=303)


@pages.get("/stats")
@cache.cached(key_prefix="stats")
def stats() -> str:
    time.sleep(current_app.config["STATS_SECONDS"])  # the expensive part
    every_comment = [
        json.loads(comment) for comment in comments.lrange(COMMENTS_KEY, 0, -1)
    ]
    authors = Counter(comment["name"] for comment in every_comment)
    views = {
        key.removeprefix(VIEWS_KEY): int(counters.get(key) or 0)
        for key in counters.scan_iter(match=VIEWS_KEY + "*", count=100)
    }
    return render_template(
        "stats.html",
        total=len(every_comment),
        authors=authors.most_common(10),
        views=sorted(views.items()),
        computed=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    )

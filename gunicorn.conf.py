"""gunicorn settings, read automatically when gunicorn starts in this folder: `gunicorn -w 4 app:flask_app`.

Command-line options override these. The listening address defaults to server.host:server.port of the config.
"""

import sys

from animeback.config import load_settings
from animeback.errors import AnimeBackError

try:
    _settings = load_settings()
except AnimeBackError as exc:  # the CLI's one line, not gunicorn's traceback of its config file
    sys.exit(f"error: {exc.message}")
bind = [f"{_settings.server.host}:{_settings.server.port}"]
# The first request of a worker may wait for its model to load (a few seconds); a search never takes long.
timeout = 120
# Threads, not one request per worker: a client that sends its headers or body slowly (or never) holds one thread
# while the worker's other threads go on answering; all threads share the worker's one model. Searches at once are
# still bounded by server.max_search_queue per worker. Behind a public front, nginx (which buffers whole requests
# before passing them on) is the stronger guard against many slow clients.
# gthread, with gunicorn's own errors (a malformed request line, a header too long) in the API's JSON shape.
worker_class = "animeback.web.gunicorn_worker.JsonErrorThreadWorker"
threads = 32
# trace.moe clients put image URLs in the query string: allow request lines up to gunicorn's maximum.
limit_request_line = 8190

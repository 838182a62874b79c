"""Web layer: the Flask app factory, one blueprint per API family, one JSON error shape."""

from __future__ import annotations

import logging
import threading

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings
from ..errors import AnimeBackError
from ..model.embedder import single_threaded_blas
from .services import Services, http_error_message

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 1024 * 1024  # room for multipart framing around an image of the largest accepted size


def create_app(settings: Settings, warm: bool = True, index=None) -> Flask:
    """Build the Flask app for these settings; with warm, the model loads in the background at once.

    `index` lets a caller share an already opened Index (tests do, to load the model once)."""
    from . import anilist, match, site, tracemoe

    single_threaded_blas()  # per worker process: gunicorn imports the app in each
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.search.max_image_bytes + MULTIPART_OVERHEAD
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # answers keep trace.moe's field order
    if settings.server.trusted_proxies:
        # The client's address as the proxies in front saw it: quotas and rate limits key on the person, not the proxy.
        hops = settings.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    services = Services(settings, index)
    app.extensions["animeback"] = services
    for blueprint in (tracemoe.bp, anilist.bp, match.bp, site.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(AnimeBackError)
    def _domain_error(exc: AnimeBackError):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=http_error_message(exc)), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return jsonify(error="Internal server error (logged on the server)"), 500

    if warm:
        threading.Thread(target=_warm, args=(services,), daemon=True).start()
    return app


def _warm(services: Services) -> None:
    try:
        services.searcher  # noqa: B018 - the property loads the model and opens the index
    except AnimeBackError as exc:
        log.error("cannot open the index: %s", exc.message)

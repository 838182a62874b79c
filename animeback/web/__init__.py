"""Web layer: the Flask app factory."""

from __future__ import annotations

from flask import Flask, jsonify

from ..config import Settings
from ..errors import AnimeBackError


def create_app(settings: Settings) -> Flask:
    """Build the Flask app for these settings."""
    app = Flask(__name__)
    app.config["ANIMEBACK_SETTINGS"] = settings

    @app.errorhandler(AnimeBackError)
    def _domain_error(exc: AnimeBackError):
        return jsonify(error=exc.message), exc.status

    @app.get("/status")
    def status():
        return jsonify(library=str(settings.library_path), milvus=settings.milvus_uri)

    return app

"""AnimeBack web server: `python app.py` (development) or `gunicorn app:flask_app` (production).

The website and the trace.moe-compatible API are being built (issue "The AnimeBack website and HTTP API");
until then this serves GET /status only.
"""

from animeback.config import load_settings
from animeback.web import create_app

settings = load_settings()
flask_app = create_app(settings)

if __name__ == "__main__":
    flask_app.run(host=settings.server.host, port=settings.server.port)

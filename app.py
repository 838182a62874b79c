"""AnimeBack web server: `python app.py` (development) or `gunicorn -w $(nproc) -b 127.0.0.1:4000 app:flask_app`
(one worker per core: each worker's CNN runs on server.cnn_threads threads, 1 by default).

Each worker loads the model once (in the background, at start) and reaches the index through the store host
(see README "Who owns the index"), so any number of workers and a running `python run.py process` share it.
"""

import logging
import sys

from animeback.config import load_settings
from animeback.errors import AnimeBackError
from animeback.web import create_app

try:
    settings = load_settings()
except AnimeBackError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(1)
logging.basicConfig(level=settings.log_level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
flask_app = create_app(settings)

if __name__ == "__main__":
    print(
        f"AnimeBack on http://{settings.server.host}:{settings.server.port}/ (development server; "
        "use gunicorn in production)"
    )
    flask_app.run(host=settings.server.host, port=settings.server.port, threaded=True)

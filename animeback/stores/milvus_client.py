"""pymilvus's client class, imported once the same way by every store that talks to Milvus."""

import logging
import warnings
from typing import Any


def milvus_client_class() -> Any:
    """Import pymilvus's MilvusClient without its warnings and with its own error log silenced."""
    with warnings.catch_warnings():  # milvus-lite 2.5 imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from pymilvus import MilvusClient
    # pymilvus logs every failed call with its traceback at ERROR (to the CLI's stderr, the server's log); the
    # stores turn each failure into a domain error that says what failed, so its reports only repeat them as
    # tracebacks. Set after the import: importing pymilvus configures its logger afresh, at WARNING.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    return MilvusClient

"""pymilvus's client class, imported once the same way by every store that talks to Milvus."""

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import StoreUnavailableError


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


@contextlib.contextmanager
def milvus_answers(what: str) -> Iterator[None]:
    """Turn a pymilvus failure inside the block into StoreUnavailableError saying that Milvus did not answer `what`."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:  # the usual cause: a Milvus that went away (with its store host)
        raise StoreUnavailableError(f"Milvus did not answer {what} ({exc.message or type(exc).__name__})") from None


SCAN_PAGE = 10_000  # rows a scan of a whole collection asks for at a time (Milvus answers at most 16384)


def strong_scan(
    client: Any, collection: str, key: str, fields: list[str], page: int = SCAN_PAGE, timeout_s: float | None = None
) -> Iterator[dict]:
    """Every row of a collection (its primary key `key` and `fields`), read at Strong consistency a page at a time
    in key order."""
    # Not query_iterator: pymilvus sends an iterator's requests with the collection's default consistency
    # (Bounded), whatever level it is given, and a Milvus standalone then answers without the last seconds' writes.
    after: Any = None
    while True:
        rows = client.query(
            collection,
            filter="" if after is None else f"{key} > {json.dumps(after)}",
            output_fields=[key, *fields],
            limit=page,
            consistency_level="Strong",
            timeout=timeout_s,
        )
        yield from rows
        if len(rows) < page:
            return
        after = max(row[key] for row in rows)  # a limited query answers the lowest keys past `after`

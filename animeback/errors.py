"""Domain errors: each carries the HTTP status the API answers with and a message fit for users."""

from __future__ import annotations


class AnimeBackError(Exception):
    """Base of every error AnimeBack reports to a user; `status` is the HTTP status for the API."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(AnimeBackError):
    """The configuration file or an override is missing, malformed or out of range."""


class MediaError(AnimeBackError):
    """A video could not be read: not a video, corrupt, truncated, empty or unreadable.

    `environmental` says the cause lies outside the file (ffmpeg missing, permission denied, a full disk), so
    indexing it again may succeed once that is fixed, with the file unchanged."""

    status = 422

    def __init__(self, message: str, environmental: bool = False):
        super().__init__(message)
        self.environmental = environmental


class LibraryError(AnimeBackError):
    """The library folder cannot be trusted for this run: missing, empty, or missing much of what is indexed."""

    status = 409


class BadRequestError(AnimeBackError):
    """A request that cannot be answered as asked: a bad parameter, image or image URL."""

    status = 400


class BadParameterError(BadRequestError):
    """A query parameter or form field that is missing, malformed or out of range."""


class BadImageError(BadRequestError):
    """A query is not a decodable image, or is too small to search."""


class ImageTooLargeError(BadImageError):
    """A query image exceeds the byte or pixel limits."""

    status = 413


class IndexBusyError(AnimeBackError):
    """The embedded stores are held open by another process."""

    status = 503


class StoreUnavailableError(AnimeBackError):
    """The store host went away during a call (killed, or stopped); the call may be tried again."""

    status = 503


class IndexMismatchError(AnimeBackError):
    """The index was built with another model than the one configured."""

    status = 409


class PreviewTamperedError(AnimeBackError):
    """A preview id that was not issued by this server."""

    status = 403


class PreviewExpiredError(AnimeBackError):
    """A preview id past its expiry."""

    status = 410


class SearchQueueFullError(AnimeBackError):
    """Too many searches waiting in this worker."""

    status = 503


class QuotaError(AnimeBackError):
    """Daily quota used up, or too many searches at once (trace.moe's 402)."""

    status = 402


class InvalidKeyError(AnimeBackError):
    """An API key that is not configured."""

    status = 403


class WriteForbiddenError(AnimeBackError):
    """A write by a caller that may not write (adding or deleting a still), or on a node that serves only."""

    status = 403


class RateLimitError(AnimeBackError):
    """Too many requests per minute from one address."""

    status = 429


class FetchError(BadRequestError):
    """A `?url=` image could not be fetched (bad or refused URL, network failure, HTTP error)."""


class NoImageError(AnimeBackError):
    """A search request that carries no image at all (trace.moe answers 405)."""

    status = 405


class NotFoundError(AnimeBackError):
    """What a request names is not there (a preview's episode, a still's filepath)."""

    status = 404


class SourceError(AnimeBackError):
    """A season or episode cannot be fetched (not found, region-locked, member-only, rate-limited...)."""

    status = 502

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable

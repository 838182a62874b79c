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
    """A video could not be read: not a video, corrupt, truncated, empty or unreadable."""

    status = 422


class BadImageError(AnimeBackError):
    """A query is not a decodable image, or is too small to search."""

    status = 400


class ImageTooLargeError(BadImageError):
    """A query image exceeds the byte or pixel limits."""

    status = 413


class IndexBusyError(AnimeBackError):
    """The embedded stores are held open by another process."""

    status = 503


class IndexMismatchError(AnimeBackError):
    """The index was built with another model than the one configured."""

    status = 409

"""Photon's exceptions. Each message is written for the person at the terminal:
it says what went wrong and what to do about it, on one line."""


class PhotonError(Exception):
    """Base of every error photon reports to a user instead of a traceback."""

    exit_code = 1


class UsageError(PhotonError):
    """A bad argument or option value."""

    exit_code = 2


class ConfigError(PhotonError):
    """A configuration file or environment variable that cannot be used."""

    exit_code = 2


class ModelError(PhotonError):
    """A model that is unknown, missing, incomplete or fails to load."""

    exit_code = 3


class DownloadError(ModelError):
    """A model file could not be fetched."""


class ChecksumError(ModelError):
    """A model file whose bytes do not match the recorded sha256."""


class NotFoundError(PhotonError):
    """An image id (or another key) that the index does not hold."""

    exit_code = 1


class ImageError(PhotonError):
    """An image that cannot be read or decoded."""

    exit_code = 4


class FileChangedError(ImageError):
    """An indexed picture whose file changed or disappeared since it was indexed."""


class DatabaseError(PhotonError):
    """The index database cannot be opened, read or written."""

    exit_code = 5

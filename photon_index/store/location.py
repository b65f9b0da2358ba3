"""Where a database lives: a local folder (a Path), or a prefix on S3-compatible object
storage (a Remote, from an s3:// URI), and the storage options that reach it.

A remote database keeps its Lance tables (images, tags) and tags.json under the URI,
where every machine that searches it finds them. The files that only ever concern one
machine stay in a local folder of that machine: the writer lock, the progress of its
runs, the dedupe journal and the thumbnail cache.

Storage options come from the [storage] settings (the config file or
PHOTON_STORAGE_<KEY>), else from the AWS environment variables other S3 tools read;
never from the command line, where a secret would show in `ps`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from photon_index.errors import UsageError

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

    from photon_index.config import Settings

SCHEME = "s3://"
# Storage setting -> the AWS environment variable that supplies it when it is not set.
_AWS_ENV = {
    "endpoint": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "allow_http": "AWS_ALLOW_HTTP",
}


def is_remote(text: str | os.PathLike[str]) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class Storage:
    """How to reach object storage. Empty fields leave the choice to the S3 client's
    own defaults (its credential chain, AWS's endpoint)."""

    endpoint: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    allow_http: bool = False

    def __repr__(self) -> str:  # never print a secret in a traceback or a log
        return f"Storage(endpoint={self.endpoint!r}, region={self.region!r})"

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> Storage:
        env = os.environ if env is None else env
        given = settings.storage

        def pick(key: str) -> str:
            return getattr(given, key) or env.get(_AWS_ENV[key], "")

        allow = given.allow_http or pick("allow_http").lower() in ("1", "true", "yes")
        return cls(
            endpoint=pick("endpoint"),
            region=pick("region"),
            access_key_id=pick("access_key_id"),
            secret_access_key=pick("secret_access_key"),
            allow_http=allow or pick("endpoint").startswith("http://"),
        )

    def lance_options(self) -> dict[str, str]:
        """Lance's (and lancedb's) storage_options."""
        options = {
            "aws_endpoint": self.endpoint,
            "aws_region": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "allow_http": "true" if self.allow_http else "",
        }
        return {k: v for k, v in options.items() if v}

    def filesystem(self) -> S3FileSystem:
        """A pyarrow S3 filesystem (paths without the scheme: bucket/key)."""
        return _filesystem(self)


@cache
def _filesystem(storage: Storage) -> S3FileSystem:
    from pyarrow.fs import S3FileSystem

    endpoint = urlparse(storage.endpoint) if storage.endpoint else None
    return S3FileSystem(
        access_key=storage.access_key_id or None,
        secret_key=storage.secret_access_key or None,
        region=storage.region or None,
        endpoint_override=(endpoint.netloc or endpoint.path) if endpoint else None,
        scheme=endpoint.scheme if endpoint and endpoint.scheme else "https",
    )


@dataclass(frozen=True)
class Remote:
    """A database on object storage: uri (s3://bucket/prefix), how to reach it, and
    this machine's folder for the database's local files."""

    uri: str
    storage: Storage
    local: Path

    def __str__(self) -> str:
        return self.uri

    def join(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def read_text(self, name: str) -> str | None:
        """A small object under the database (None when there is none)."""
        from pyarrow.fs import FileType

        fs, path = self.storage.filesystem(), _key(self.join(name))
        if fs.get_file_info(path).type == FileType.NotFound:
            return None
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8")

    def write_text(self, name: str, text: str) -> None:
        """One PUT: readers see the old object or the new one, never a part."""
        with self.storage.filesystem().open_output_stream(_key(self.join(name))) as f:
            f.write(text.encode("utf-8"))

    def size(self) -> int:
        """Bytes of every object under the database."""
        from pyarrow.fs import FileSelector

        selector = FileSelector(_key(self.uri), recursive=True, allow_not_found=True)
        infos = self.storage.filesystem().get_file_info(selector)
        return sum(i.size or 0 for i in infos)


Database = Path | Remote


def database(db: str | os.PathLike[str], settings: Settings) -> Database:
    """The database named by --db: an s3:// URI or a folder."""
    text = os.fspath(db)
    if not is_remote(text):
        return Path(text).expanduser().absolute()
    parsed = urlparse(text)
    if not parsed.netloc:
        raise UsageError(f"--db {text} names no bucket: use s3://BUCKET/PREFIX")
    uri = f"{SCHEME}{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    # A folder of this machine per URI, beside the default database folder.
    local = settings.paths.db.parent / "remote" / parsed.netloc / parsed.path.strip("/")
    return Remote(uri, Storage.from_settings(settings), local)


def local_folder(db: Database) -> Path:
    """The folder of db's files that stay on this machine: the database itself when
    it is local."""
    return db.local if isinstance(db, Remote) else db


def _key(uri: str) -> str:
    """bucket/key, as pyarrow's filesystems name an object."""
    return uri.removeprefix(SCHEME)

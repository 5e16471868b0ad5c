"""Object storage: ``s3://BUCKET/PATH`` and ``gs://BUCKET/PATH`` (``gcs://``) through ``pyarrow.fs``.

Its S3 and GCS file systems are in pyarrow's wheels (``embedrt[dataset]``); nothing else is needed.
Credentials, region and endpoint come from the environment, as the cloud's own tools take them
(``AWS_ACCESS_KEY_ID`` ..., ``AWS_REGION``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an S3-compatible
store such as MinIO; ``GOOGLE_APPLICATION_CREDENTIALS``), so every process and every Ray actor finds
them the same way. Options inside a URI are refused: URIs are written into manifests and logs.

A bundle given as a URI (``Embedder("s3://...")``, ``embedrt serve s3://...``, a corpus job's model)
is fetched into a local cache once per machine (``local_bundle``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from ._errors import EmbedrtError

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCHEMES = {"s3": "s3", "gs": "gs", "gcs": "gs"}  # pyarrow.fs's name for each


class StorageError(EmbedrtError, ValueError):
    """A location that cannot be used: an unknown scheme, options in a URI, a bucket that is not there."""


def is_uri(where: object) -> TypeGuard[str]:
    return isinstance(where, str) and bool(_URI.match(where))


def split_uri(uri: str) -> tuple[Any, str]:
    """(pyarrow file system, path inside it: ``bucket/key``) for an object-store URI."""
    scheme = _URI.match(uri).group(1).lower()  # type: ignore[union-attr]
    if scheme not in _SCHEMES:
        raise StorageError(
            f"{uri!r}: unknown storage scheme {scheme!r}; expected a local path or one of "
            f"{sorted(s + '://' for s in _SCHEMES)} (mount other file systems and give their local path)"
        )
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise StorageError(
            f"{uri!r}: options in the URI ({parts.query or parts.fragment!r}) are not taken; set them in the "
            "environment instead (AWS_REGION, AWS_ENDPOINT_URL, credentials), where every Ray actor finds them too"
        )
    if not parts.netloc:
        raise StorageError(f"{uri!r} names no bucket; expected {scheme}://BUCKET/PATH")
    return _filesystem(_SCHEMES[scheme], parts.netloc), f"{parts.netloc}{parts.path}".rstrip("/")


@functools.cache
def _filesystem(scheme: str, bucket: str) -> Any:
    try:
        import pyarrow.fs
    except ImportError as e:
        raise ImportError(f'{scheme}:// locations are read through pyarrow: pip install "embedrt[dataset]"') from e

    try:  # pyarrow resolves an S3 bucket's region here (one request): once per bucket and process
        return pyarrow.fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    except (OSError, ValueError) as e:
        raise StorageError(f"cannot open {scheme}://{bucket}: {e}") from e


def local_bundle(where: str | Path) -> Path:
    """A bundle folder on this machine: ``where`` itself, or for an object-store URI a copy of it in
    ``$EMBEDRT_CACHE/bundles/HASH/NAME`` (default ``~/.cache/embedrt``; HASH of its manifest, NAME its
    own folder name), so it is fetched once per machine and again only when the bundle changed
    (``Embedder`` then checks every file against that manifest). Several processes may fetch at once:
    each copies into a temporary folder, and the first rename wins."""
    if not is_uri(str(where)):
        return Path(where)
    from ._bundle import MANIFEST_NAME

    uri = str(where).rstrip("/")
    fs, path = split_uri(uri)  # a missing pyarrow is named here
    import pyarrow.fs

    try:
        with fs.open_input_stream(f"{path}/{MANIFEST_NAME}", compression=None) as f:
            manifest = bytes(f.read())
    except FileNotFoundError as e:
        raise StorageError(f"{uri!r} holds no {MANIFEST_NAME}; expected a bundle folder made by embedrt export") from e
    root = Path(os.environ.get("EMBEDRT_CACHE") or Path.home() / ".cache" / "embedrt") / "bundles"
    name = PurePosixPath(path).name  # kept as the copy's folder name (a server names its model after it)
    home = root / hashlib.sha256(manifest).hexdigest()[:16]
    if (home / name / MANIFEST_NAME).is_file():
        return home / name
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.tmp-", dir=root))
    try:
        (tmp / name).mkdir()
        pyarrow.fs.copy_files(path, str(tmp / name), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())  # fmt: skip
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the bundle from other users of the cache
        os.rename(tmp, home)
    except OSError:
        if not (home / name / MANIFEST_NAME).is_file():  # not another process's copy that won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return home / name

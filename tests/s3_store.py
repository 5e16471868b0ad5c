"""An S3 endpoint on localhost (moto's server) for the corpus job's object-storage tests."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


@contextlib.contextmanager
def s3_server(*buckets: str) -> Iterator[dict[str, str]]:
    """Start moto's S3 server, point ``AWS_ENDPOINT_URL`` at it, make ``buckets``; yields the env it set."""
    server_mod = pytest.importorskip("moto.server")
    import pyarrow.fs

    from embedrt import _objects

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _objects._filesystem.cache_clear()  # file systems made before this point know another endpoint
    try:
        for b in buckets:
            pyarrow.fs.FileSystem.from_uri(f"s3://{b}?allow_bucket_creation=true")[0].create_dir(b)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _objects._filesystem.cache_clear()
        server.stop()


def put(uri: str, data: bytes) -> None:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_output_stream(path, compression=None) as f:  # pyarrow would gzip a .gz name again
        f.write(data)


def put_folder(folder: Path, uri: str) -> None:
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            put(f"{uri}/{f.relative_to(folder).as_posix()}", f.read_bytes())


def listing(uri: str) -> dict[str, int]:
    """Every object under ``uri``: path relative to it -> size."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
    return {i.path[len(path) + 1:]: i.size for i in infos if i.type == pyarrow.fs.FileType.File}

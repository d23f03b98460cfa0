"""Dataset folders in cloud storage (``s3://``, ``gs://``, ``file://`` ... anything pyarrow.fs opens).

A remote dataset folder is copied once per machine into the local cache
(``$RAYSEARCH_CACHE`` or ``~/.cache/raysearch``)/``remote/<hash of the URI>``, atomically, and then used
like any local folder. The driver, every trial and every Ray Data task call :func:`local_dataset_path`
with the same URI, so each node of a cluster fetches the data once, whatever runs there first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

COMPLETE_MARKER = ".raysearch-complete"


def is_uri(path: str | os.PathLike) -> bool:
    """Return True for ``scheme://...`` paths (cloud or file URIs), False for plain local paths."""
    return "://" in str(path)


def local_dataset_path(path: str | os.PathLike) -> Path:
    """Return a local folder holding the dataset at ``path`` (a local path is returned resolved, a URI is copied once)."""
    if not is_uri(path):
        return Path(path).expanduser().resolve()
    from raysearch.data.phantom import cache_root

    uri = str(path).rstrip("/")
    target = Path(cache_root()) / "remote" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (target / COMPLETE_MARKER).exists():
        return target
    import pyarrow.fs as pafs

    try:
        fs, remote = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(remote)
    except Exception as exc:
        raise FileNotFoundError(f"{uri}: cannot open the dataset location ({type(exc).__name__}: {exc})") from exc
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{uri}: not a folder (a dataset is a folder with manifest.csv)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fetch-"))
    try:
        pafs.copy_files(remote, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        (tmp / COMPLETE_MARKER).write_text(uri + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / COMPLETE_MARKER).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target

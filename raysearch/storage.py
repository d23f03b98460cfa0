"""Where an experiment's own files live: a local folder or a cloud URI (``s3://``, ``gs://``, ``file://``...).

Ray keeps its files (trial folders, checkpoints, W&B runs) under ``--storage`` itself. raysearch's
files -- ``experiment.json``, ``splits.json``, ``runs/<trial>/`` written by the trials on whatever node
they ran, and the gathered Parquet tables -- go through an :class:`ExperimentStore`, so the same code
writes to a folder on a laptop and to a bucket from the nodes of a cluster.

With a URI the driver also keeps a **local copy** of the experiment (``$RAYSEARCH_CACHE``/
``experiments/<hash>``), where the tables are gathered before they are uploaded; the report reads that
copy (or downloads one: :func:`local_experiment_copy`). Objects are written whole, and a trial's
``trial.parquet`` -- its completion record -- is uploaded after its other files.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

from raysearch import schema
from raysearch.atomic import write_bytes_atomic
from raysearch.data.remote import is_uri


class ExperimentStore:
    """An experiment folder given as a local path or a URI; paths below it are ``/``-separated relatives."""

    def __init__(self, location: str | os.PathLike) -> None:
        import pyarrow.fs as pafs

        self.location = str(location).rstrip("/") if is_uri(location) else str(Path(location).expanduser().resolve())
        self.is_uri = is_uri(self.location)
        if self.is_uri:
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(self.location)
            except Exception as exc:
                raise ValueError(f"{self.location}: cannot open this storage location "
                                 f"({type(exc).__name__}: {exc})") from exc
        else:
            self.fs, self.root = pafs.LocalFileSystem(), self.location

    def __repr__(self) -> str:
        return f"ExperimentStore({self.location!r})"

    def _path(self, rel: str = "") -> str:
        return f"{self.root}/{rel}".rstrip("/") if rel else self.root

    def exists(self, rel: str = "") -> bool:
        """Return whether a file or folder exists at ``rel``."""
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self._path(rel)).type != pafs.FileType.NotFound

    def is_empty(self) -> bool:
        """Return True when the experiment folder is missing or holds nothing."""
        import pyarrow.fs as pafs

        if not self.exists():
            return True
        return not self.fs.get_file_info(pafs.FileSelector(self._path(), recursive=False))

    def subfolders(self, rel: str = "") -> list[str]:
        """Return the names of the folders directly below ``rel`` (empty when it does not exist)."""
        import pyarrow.fs as pafs

        if not self.exists(rel):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self._path(rel), recursive=False))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_bytes(self, rel: str) -> bytes:
        """Return the content of the file at ``rel``."""
        with self.fs.open_input_stream(self._path(rel)) as f:
            return f.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` whole (locally through a temporary file and a rename)."""
        if not self.is_uri:
            write_bytes_atomic(self._path(rel), data)
            return
        parent = self._path(rel).rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(self._path(rel)) as f:
            f.write(data)

    def read_parquet(self, rel: str):
        """Return the Parquet table at ``rel`` as a DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(rel)))

    def push(self, names, local_dir: str | os.PathLike, rel: str = "") -> None:
        """Write the files ``names`` of ``local_dir`` to ``rel``, in the given order."""
        prefix = f"{rel}/" if rel else ""
        for name in names:
            self.write_bytes(prefix + name, (Path(local_dir) / name).read_bytes())

    def fetch(self, names, local_dir: str | os.PathLike) -> None:
        """Copy the top-level files ``names`` that exist here into ``local_dir``."""
        for name in names:
            if self.exists(name):
                (Path(local_dir) / name).write_bytes(self.read_bytes(name))

    def upload_folder(self, local_dir: str | os.PathLike, rel: str, last: tuple[str, ...] = ()) -> None:
        """Copy the files of ``local_dir`` (flat) to ``rel``; the names in ``last`` are written after the others."""
        names = sorted(p.name for p in Path(local_dir).iterdir() if p.is_file())
        self.push(sorted(names, key=lambda n: n in last), local_dir, rel)

    def download(self, rel: str, local_dir: str | os.PathLike) -> Path:
        """Copy the folder ``rel`` (recursively) into ``local_dir``; return ``local_dir``."""
        import pyarrow.fs as pafs

        local = Path(local_dir)
        local.mkdir(parents=True, exist_ok=True)
        if self.exists(rel):
            pafs.copy_files(self._path(rel), str(local), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        return local


def local_mirror(location: str) -> Path:
    """Return the local folder that mirrors the experiment at URI ``location`` (created if needed)."""
    from raysearch.data.phantom import cache_root

    uri = str(location).rstrip("/")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    path = Path(cache_root()) / "experiments" / f"{key}-{uri.rsplit('/', 1)[-1]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# the experiment's own top-level files (the report also reads runs/; Ray's trial folders are not needed)
EXPERIMENT_FILES = (schema.EXPERIMENT_FILE, schema.SPLITS_FILE)
TABLE_FILES = (schema.TRIALS_FILE, schema.HISTORY_FILE, schema.LANDMARK_FILE, schema.SEGMENTATION_FILE)


def local_experiment_copy(location: str | os.PathLike) -> Path:
    """Return a local folder with what the report reads of an experiment; a local path is returned as it is.

    For a URI: its tables, ``experiment.json``, ``splits.json`` and ``runs/`` (best checkpoints) are
    downloaded afresh into :func:`local_mirror` (a rerun after more trials finished sees them).
    """
    if not is_uri(location):
        return Path(location)
    store = ExperimentStore(location)
    if not store.exists():
        raise FileNotFoundError(f"{store.location}: no such experiment")
    mirror = local_mirror(store.location)
    shutil.rmtree(mirror / "runs", ignore_errors=True)
    store.fetch(EXPERIMENT_FILES + TABLE_FILES, mirror)
    store.download("runs", mirror / "runs")
    return mirror

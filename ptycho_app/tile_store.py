"""The tile store of a tiled run: ``<out>/<stem>.tiles/``, every finished tile on disk.

Layout:

- ``store.json``: what the tiles were computed from, the input's name and sha256 and the options
  that change a tile's solution (:func:`store_record`).  A store of another input or other options
  is refused with a message naming the differing option (:meth:`TileStore.prepare`).
- ``tile-KKKKK.npz``: tile ``K``'s solution for every method (``<method>.<field>`` arrays of
  :class:`~ptycho_app.tiled.TileSolution`, its ``attrs`` as JSON), written atomically by whoever
  solved it (this process or a Dask worker).
- ``tasks.log``: one line per batched solve that finished (its tile indices), appended by the
  solving process: how often each task ran.

A task (one batched solve) is finished when all of its tiles' files exist; a finished task is never
run again (a Dask retry of it finds its files and returns at once).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .io.atomic import atomic_path
from .io.errors import InputFileError

#: Added to the input's stem: the store's folder in ``--out``.
STORE_SUFFIX = ".tiles"
#: The store's description, beside the tiles.
RECORD_NAME = "store.json"
#: One line per finished task.
LOG_NAME = "tasks.log"
FORMAT = "ptycho-app tile store"
VERSION = 1
#: The arrays of one tile and method (TileSolution's fields but ``attrs``).
FIELDS = ("eigenvalues", "object", "residual", "loss", "U", "d")


def store_folder(out_dir, input_path) -> Path:
    """``<out>/<stem>.tiles``."""
    return Path(out_dir) / f"{Path(input_path).stem}{STORE_SUFFIX}"


def _plain(value):
    """JSON's view of a value (tuples as lists, NumPy scalars as numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def store_record(input_path, sha256: str, options: dict) -> dict:
    """The contents of ``store.json``.

    Parameters
    ----------
    input_path : Path
    sha256 : str
        Of the input file.
    options : dict
        Option name (a ``--flag`` without dashes, underscores for dashes) -> value; ``None`` values
        (not given) are left out.
    """
    return {"format": FORMAT, "version": VERSION, "input_file": Path(input_path).name, "input_sha256": sha256,
            "options": _plain({k: v for k, v in sorted(options.items()) if v is not None})}


def flag_name(option: str) -> str:
    from .cli import flag_of

    return flag_of(option)


class TileStore:
    """One input's tile store (see the module's description).

    Parameters
    ----------
    folder : str or Path
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    # ---- tiles ---------------------------------------------------------------------------------
    def tile_file(self, index: int) -> Path:
        return self.folder / f"tile-{int(index):05d}.npz"

    def finished(self, indices) -> bool:
        """Whether every tile of ``indices`` has its file."""
        return all(self.tile_file(k).exists() for k in indices)

    def count(self) -> int:
        """Tiles finished."""
        return len(list(self.folder.glob("tile-*.npz"))) if self.folder.is_dir() else 0

    def write_tile(self, index: int, per_method: dict[str, dict]):
        """Store one tile's solutions atomically.

        Parameters
        ----------
        index : int
        per_method : dict
            ``method -> {field: value}`` with :data:`FIELDS` and ``attrs`` (a dict).
        """
        arrays = {}
        for method, solution in per_method.items():
            for name in FIELDS:
                arrays[f"{method}.{name}"] = np.asarray(solution[name])
            arrays[f"{method}.attrs"] = np.asarray(json.dumps(_plain(solution["attrs"])))
        with atomic_path(self.tile_file(index)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    def read_tile(self, index: int, methods) -> dict[str, dict]:
        """One tile's solutions, ``method -> {field: value}`` as written.

        Raises
        ------
        InputFileError
            The file is damaged or lacks a method.
        """
        path = self.tile_file(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                solutions = {}
                for method in methods:
                    solution = {name: data[f"{method}.{name}"] for name in FIELDS}
                    solution["residual"] = float(solution["residual"])
                    solution["attrs"] = json.loads(str(data[f"{method}.attrs"]))
                    solutions[method] = solution
        except (OSError, KeyError, ValueError) as error:
            raise InputFileError(path, f"cannot be read ({' '.join(str(error).split())}); remove it and run "
                                 "again with --resume to solve that tile again") from None
        return solutions

    def log_task(self, indices):
        """Append one line (the task's tile indices) to ``tasks.log``."""
        line = " ".join(str(int(k)) for k in indices) + "\n"
        fd = os.open(self.folder / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def executions(self) -> list[tuple[int, ...]]:
        """The tasks that finished, one entry per run of each (from ``tasks.log``)."""
        path = self.folder / LOG_NAME
        if not path.exists():
            return []
        return [tuple(int(k) for k in line.split()) for line in path.read_text().splitlines() if line.strip()]

    # ---- the record ------------------------------------------------------------------------------
    def record(self) -> dict | None:
        """``store.json`` (None when the folder has none)."""
        path = self.folder / RECORD_NAME
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InputFileError(path, f"cannot be read ({error}); remove {self.folder} or pass --overwrite") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise InputFileError(path, f"is not a ptycho-app tile store; remove {self.folder} or choose another --out")
        return record

    def prepare(self, record: dict, resume: bool, overwrite: bool) -> int:
        """Make the store ready for a run; return the number of tiles already finished.

        A store that exists is continued with ``resume`` (its record must match), started over with
        ``overwrite`` (without ``resume``) and refused otherwise; one without finished tiles is
        started over.

        Raises
        ------
        InputFileError
            Naming the store: it exists without ``--resume``/``--overwrite``, or it was made from
            another input (sha256) or with another value of an option (the flag is named).
        """
        earlier = self.record()
        if earlier is None and self.folder.exists() and any(self.folder.iterdir()):
            raise InputFileError(self.folder, f"exists and is not a tile store (no {RECORD_NAME}); remove it or "
                                 "choose another --out")
        if earlier is not None and self.count() == 0:  # nothing finished to keep (stopped before any tile)
            self.remove()
            earlier = None
        if earlier is not None and not resume:
            if not overwrite:
                raise InputFileError(self.folder, f"holds {self.count()} finished tile(s) of an earlier, "
                                     "interrupted run: continue it with --resume, or pass --overwrite to start over")
            self.remove()
            earlier = None
        if earlier is not None:
            self.check(earlier, record)
            return self.count()
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / RECORD_NAME) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
        return 0

    def check(self, earlier: dict, record: dict):
        """Refuse to continue a store made from another input or with other options."""
        if earlier.get("version") != VERSION:
            raise InputFileError(self.folder, f"was written by another version of the tile store "
                                 f"({earlier.get('version')}, this is {VERSION}); pass --overwrite to start over")
        if earlier.get("input_sha256") != record["input_sha256"]:
            raise InputFileError(self.folder, f"holds tiles of a different {earlier.get('input_file')} (sha256 "
                                 f"differs from {record['input_file']}'s); pass --overwrite to start over",
                                 field="input_sha256")
        old, new = earlier.get("options", {}), record["options"]
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                was = old.get(name, "the default")
                now = new.get(name, "the default")
                raise InputFileError(self.folder, f"its tiles were computed with {flag_name(name)} {was}, this run "
                                     f"has {now}: --resume needs the same options (or pass --overwrite without "
                                     "--resume to start over)", field=flag_name(name))

    def remove(self):
        """Delete the store (its folder and everything in it)."""
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["FIELDS", "LOG_NAME", "RECORD_NAME", "STORE_SUFFIX", "TileStore", "store_folder", "store_record"]

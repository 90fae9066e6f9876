"""Errors for a user's files: one line that names the file, the field and what was expected."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

#: What h5py raises for a damaged file (bad superblock, object headers, B-trees, chunks), depending on
#: where the damage is met: opening, listing, checking a link, reading data or attributes.
HDF5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


class InputFileError(ValueError):
    """A measurement, result or MATLAB file cannot be used.

    The message reads ``"<file>: <field>: <problem>"`` so the command line can print it as is.
    """

    def __init__(self, path, problem, field=None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)


def one_line(error: BaseException) -> str:
    """An exception's text on one line (h5py's KeyError messages come quoted)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


@contextmanager
def hdf5_errors(path, field=None):
    """Turn h5py's errors on a damaged file into :class:`InputFileError` naming the file and dataset.

    Parameters
    ----------
    path : str or Path
        The file being read.
    field : str, optional
        The dataset (or attribute) being read; None for the file's structure (opening, listing).
    """
    try:
        yield
    except InputFileError:
        raise
    except HDF5_ERRORS as error:
        what = "cannot be read" if field else "HDF5 structure cannot be read"
        raise InputFileError(path, f"{what} (damaged or not an HDF5 file: {one_line(error)})",
                             field=field) from None


def require_regular_file(path) -> Path:
    """Check that ``path`` is an existing regular file before opening it.

    A FIFO, a device or a socket would block or stream forever when opened, so they are refused
    from ``stat`` alone (which never blocks).

    Raises
    ------
    InputFileError
        Missing, a folder, or not a regular file.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except OSError as error:
        raise InputFileError(path, f"cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(path, "is a folder, expected a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file (device or socket)"
        raise InputFileError(path, f"is {kind}: expected a regular file")
    return path

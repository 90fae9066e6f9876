"""Safe output files: atomic writes, one writer per file, inputs never replaced, full disks, Ctrl-C.

Every output is written under a temporary name beside it (``.<name>.<random>.part``) and renamed
onto its name when complete (:func:`atomic_path`; HDF5 files are built in memory first,
:func:`atomic_hdf5`, so that a full disk is an ordinary :class:`OSError`, not a failed flush inside
HDF5).  While a file is written, and while a command that will write it runs
(:func:`claim_outputs`), its advisory lock ``.<name>.lock`` (``fcntl.flock``, holding the writer's
pid) is held: a second ptycho-app process writing the same file is refused.  The operating system
releases the lock when its process ends, also on ``kill -9``; the temporary and lock files such a
process leaves are removed by the next write into that folder (:func:`remove_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from ..resources import format_bytes

#: When this process started (this module's import): older unlocked temporary files are left-overs.
PROCESS_START = time.time()
#: Errors of a full disk or quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

_held: dict[str, int] = {}  # lock file -> its descriptor, for the locks this process holds
_claims = contextlib.ExitStack()  # outputs claimed by the running command (see release_outputs)
_inputs: list[Path] = []  # files the running command reads: never written over
_cleaned: set[str] = set()  # folders already cleaned of stale temporary files


class OutputFileError(ValueError):
    """An output file cannot be written; the message names the file and says why, in one line."""

    def __init__(self, path, message):
        self.path = str(path)
        super().__init__(message)


# ---- inputs are never outputs -------------------------------------------------------------------
def same_file(a, b) -> bool:
    """Whether two paths name the same existing file (same inode: symbolic and hard links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(outputs, inputs):
    """Raise :class:`OutputFileError` if an output path is (or links to) one of the input files."""
    for output in outputs:
        for given in inputs:
            if given is not None and same_file(output, given):
                raise OutputFileError(output, f"the output {output} is the input file {given}: refusing to write "
                                      "over an input; choose another output name")


def protect_inputs(paths):
    """Record the files the running command reads: :func:`atomic_path` refuses to replace them."""
    _inputs.extend(Path(p) for p in paths if p is not None)


# ---- one writer per file ------------------------------------------------------------------------
def lock_path(target) -> Path:
    """The lock file of an output: ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _lock_key(target) -> str:
    return os.path.realpath(lock_path(target))


def _read_pid(fd) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int(os.pread(fd, 32, 0).split()[0]))
    return "unknown"


def _acquire(target) -> int:
    """Take the lock of ``target`` without waiting; return its descriptor.

    Raises
    ------
    OutputFileError
        When another process holds it (the message gives that process's pid).
    """
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise OutputFileError(target, f"{target} is being written by another ptycho-app process "
                                  f"(pid {pid})") from None
        try:  # the previous holder may have removed the lock file between our open and flock
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # the pid is for messages only (a full disk may refuse it)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release(target, fd):
    """Remove the lock file, then let the lock go (whoever waits on the old file tries again)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_path(target))
    os.close(fd)


@contextlib.contextmanager
def output_lock(target):
    """Hold the advisory lock of ``target`` for the block (a lock this process holds is re-entered).

    Raises
    ------
    OutputFileError
        When another process writes ``target`` (``"X is being written by another ptycho-app process
        (pid N)"``).
    """
    target = Path(target)
    key = _lock_key(target)
    if key in _held:
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    _held[key] = _acquire(target)
    try:
        yield
    finally:
        _release(target, _held.pop(key))


@contextlib.contextmanager
def claimed_outputs(outputs, inputs=(), overwrite=False, hint="pass --overwrite to replace it"):
    """Claim the outputs of a piece of work for the block, before the work starts.

    Refuses outputs that are inputs, takes each output's lock and, unless ``overwrite``, refuses
    outputs that exist (the message names the file and ends with ``hint``).

    Raises
    ------
    OutputFileError
    """
    outputs = [Path(p) for p in outputs]
    refuse_inputs(outputs, inputs)
    with contextlib.ExitStack() as locks:
        for output in outputs:
            locks.enter_context(output_lock(output))
        if not overwrite:
            refuse_existing(outputs, hint)
        try:
            yield
        except KeyboardInterrupt:  # the work was interrupted: a further Ctrl-C must not cut the release
            with sigint_ignored():   # short (and replace the first one's message on its way out)
                locks.close()
            raise


@contextlib.contextmanager
def sigint_ignored():
    """Ignore Ctrl-C (SIGINT) during the block (main thread only), then restore the handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def claim_outputs(outputs, inputs=(), overwrite=False, hint="pass --overwrite to replace it"):
    """:func:`claimed_outputs` for a command: held until :func:`release_outputs` (or the process
    ends); the inputs are protected until then (:func:`protect_inputs`)."""
    inputs = [p for p in inputs if p is not None]
    _claims.enter_context(claimed_outputs(outputs, inputs, overwrite, hint))
    protect_inputs(inputs)


def refuse_existing(outputs, hint="pass --overwrite to replace it"):
    """Raise :class:`OutputFileError` for the first output that exists."""
    for output in outputs:
        if os.path.lexists(output):
            raise OutputFileError(output, f"{output} already exists; {hint}")


def release_outputs():
    """Let the running command's claims go (the command line calls it when a command ends)."""
    _claims.close()
    _inputs.clear()


# ---- left-overs of killed processes ---------------------------------------------------------------
def _target_of(name: str, suffix: str) -> str:
    """The output name of a ``.<name>.<random>.part`` or ``.<name>.lock`` file."""
    inner = name[1:-len(suffix)]
    return inner.rsplit(".", 1)[0] if suffix == ".part" else inner


#: Temporary files as :func:`atomic_path` names them (``mkstemp``: ``.<output>.<8 random characters>.part``).
OUR_PART = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")


def _is_ours(path: Path, suffix: str) -> bool:
    """Whether a hidden ``.part`` / ``.lock`` file has the shape ptycho-app gives its own (a temporary
    name from :func:`atomic_path`; a lock file holding nothing or a process id), so that other
    programs' files in the folder are never removed."""
    if suffix == ".part":
        return bool(OUR_PART.match(path.name))
    try:
        with open(path, "rb") as handle:
            text = handle.read(64).strip()
    except OSError:
        return False
    return text == b"" or text.isdigit()


def remove_stale(folder):
    """Remove the temporary and lock files a killed ptycho-app process left in ``folder``.

    A file is stale when it has the shape of ptycho-app's own (:func:`_is_ours`), its output is not
    locked and it is older than this process; each folder is looked at once per process.
    """
    key = os.path.realpath(folder)
    if key in _cleaned or not os.path.isdir(folder):
        return
    _cleaned.add(key)
    folder = Path(folder)
    for suffix in (".part", ".lock"):
        for leftover in folder.glob(f".*{suffix}"):
            if not _is_ours(leftover, suffix):
                continue
            try:
                if leftover.stat().st_mtime >= PROCESS_START:
                    continue
            except FileNotFoundError:
                continue
            target = folder / _target_of(leftover.name, suffix)
            if _lock_key(target) in _held:
                continue
            try:
                fd = _acquire(target)
            except (OutputFileError, OSError):  # a running process writes it (or the folder is not ours)
                continue
            try:
                if suffix == ".part":
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
            finally:
                _release(target, fd)  # removes a stale lock file too


# ---- Ctrl-C waits for a write ---------------------------------------------------------------------
@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C (SIGINT) during the block and deliver it when the block ends.

    Yields a list that gets one entry per SIGINT held (empty: none came).  Nested blocks pass a
    held signal outwards; outside the main thread (where Python cannot handle signals) nothing is
    held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if held:
            signal.raise_signal(signal.SIGINT)


# ---- atomic writes --------------------------------------------------------------------------------
def check_free_space(folder, nbytes: int, what):
    """Refuse to start writing ``nbytes`` (an estimate) where the disk has less free; ``what``
    names the file(s) in the message."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise OutputFileError(what, f"{what}: needs about {format_bytes(nbytes)} but only {format_bytes(free)} "
                              "is free on that disk; free some space or choose another output folder")


def no_space_error(target) -> OutputFileError:
    target = Path(target)
    return OutputFileError(target, f"{target}: no space left on the device; {target.name} was not written (its "
                           "temporary file was removed)")


@contextlib.contextmanager
def atomic_path(target, nbytes: int = 0):
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    An exception inside the block removes the temporary file and leaves any existing ``target``
    untouched; Ctrl-C during the block is held until the file is complete
    (:func:`sigint_deferred`).  The target's lock is held throughout.

    Parameters
    ----------
    target : str or Path
    nbytes : int
        What the file will take, when known: refused up front where the disk has less free.

    Raises
    ------
    OutputFileError
        When ``target`` is an input of the running command, another process writes it, or the
        disk is (or would be) full.
    """
    target = Path(target)
    refuse_inputs([target], _inputs)
    with output_lock(target), sigint_deferred():
        check_free_space(target.parent, nbytes, target)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make every output private
            yield Path(tmp)
            os.replace(tmp, target)
        except BaseException as error:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if isinstance(error, OSError) and error.errno in NO_SPACE:
                raise no_space_error(target) from None
            if isinstance(error, OSError):  # one line naming the output, not the temporary file
                raise OutputFileError(target, f"{target}: not written ({error.strerror or error}); an existing "
                                      f"{target.name} is unchanged") from None
            raise


@contextlib.contextmanager
def atomic_hdf5(target):
    """Yield a new HDF5 file (``h5py.File``) that becomes ``target`` atomically when the block ends.

    The file is built in memory and written with :func:`atomic_path` (its exact size checked
    against the free space first): HDF5 never writes to the disk itself, so a full disk cannot
    leave it with a file it fails to flush (which crashed the interpreter at exit).  The price is
    memory for the file once more while it is written.
    """
    import h5py

    with h5py.File(f"ptycho-app-memory-{id(target)}-{time.monotonic_ns()}.h5", "w", driver="core",
                   backing_store=False) as f:
        yield f
        f.flush()
        image = f.id.get_file_image()
    with atomic_path(target, nbytes=len(image)) as tmp:
        tmp.write_bytes(image)

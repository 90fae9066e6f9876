"""Where tasks run: in this process (``--scheduler none``) or on Dask workers (``local``, an address).

A task is a pure function call ``function(*args)`` whose result is small (the work itself is written
to disk by the task, see :mod:`ptycho_app.tile_store`).  :func:`open_scheduler` gives a
``distributed.Client`` (or None for in-process) and :func:`run_tasks` runs a list of tasks on it,
with a tqdm bar over the completed tasks.  A worker that dies mid-task (killed, out of memory) makes
Dask run that task again on another worker (``distributed.scheduler.allowed-failures``, 3 by
default); Ctrl-C cancels the tasks not yet finished.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from tqdm.auto import tqdm

#: The ``--scheduler`` values that are not addresses.
SCHEDULERS = ("none", "local")
#: Seconds a Dask scheduler at an address has to answer.
CONNECT_TIMEOUT = 5.0


def check_scheduler_flags(scheduler: str, workers=None, threads_per_worker=None):
    """Refuse ``--workers`` / ``--threads-per-worker`` that are not positive or not with ``local``.

    Raises
    ------
    ValueError
        Naming the flag.
    """
    if not scheduler:
        raise ValueError("--scheduler must be none, local or the address of a Dask scheduler (tcp://host:port)")
    for flag, value in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
        if value is None:
            continue
        if int(value) != value or value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
        if scheduler != "local":
            raise ValueError(f"{flag} needs --scheduler local (a cluster at an address has its own workers)")


def _distributed():
    try:
        import distributed
    except ImportError:  # a dependency of ptycho-app, but an environment may lack it
        raise ValueError("--scheduler local or an address needs dask.distributed: pip install 'distributed>=2024.1'") \
            from None
    return distributed


@contextlib.contextmanager
def open_scheduler(scheduler: str = "none", workers: int | None = None, threads_per_worker: int | None = None,
                   timeout: float = CONNECT_TIMEOUT):
    """A Dask client for ``--scheduler`` for the block (None for ``none``).

    Parameters
    ----------
    scheduler : str
        ``none`` (in this process), ``local`` (a ``LocalCluster`` of worker processes, no dashboard,
        closed with the block) or the address of a running scheduler (``tcp://host:8786``).
    workers : int, optional
        ``local``: worker processes (default: Dask's choice from the CPU count).
    threads_per_worker : int, optional
        ``local``: tasks at once per worker, and torch threads per worker (default 1).
    timeout : float
        Seconds an address has to answer.

    Raises
    ------
    ValueError
        One line: a bad flag, or no scheduler at the address.
    """
    check_scheduler_flags(scheduler, workers, threads_per_worker)
    if scheduler == "none":
        yield None
        return
    distributed = _distributed()
    if scheduler == "local":
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker or 1,
                                           processes=True, dashboard_address=None, silence_logs=logging.ERROR,
                                           preload=[__name__])  # dask_setup below, in every worker
        with cluster, distributed.Client(cluster) as client:
            yield client
        return
    quiet = [logging.getLogger(name) for name in ("distributed", "tornado")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:  # the failed attempts are said once, below
            logger.setLevel(logging.CRITICAL)
        client = distributed.Client(scheduler, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - an address can fail in many ways (OSError, TimeoutError, ValueError)
        text = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({text}; waited at most "
                         f"{timeout:g} s); give none, local or the address of a running scheduler (tcp://host:port)") \
            from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    with client:
        yield client


def dask_setup(worker):
    """Preload of ``--scheduler local``'s workers: a terminal's Ctrl-C reaches the whole process group,
    and only ptycho-app (the client) answers it, closing the cluster; torch's threads are the worker's."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(int(worker.state.nthreads))


def set_worker_threads():
    """On a Dask worker: torch's threads = the worker's threads (once per process); elsewhere nothing."""
    if "distributed" not in sys.modules:
        return
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker
        return
    import torch

    threads = int(worker.state.nthreads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_tasks(function, tasks: list[tuple], client=None, progress: bool = True, desc: str = "tasks", on_done=None):
    """Run ``function(*args)`` for every ``args`` of ``tasks``; in this process or on ``client``'s workers.

    Parameters
    ----------
    function : callable
        Importable at module level (Dask sends it to the workers by reference).
    tasks : list of tuple
        Each task's arguments (pure: only data, no open files).
    client : distributed.Client, optional
        None: one after another in this process.
    progress : bool
        A tqdm bar over completed tasks.
    desc : str
        The bar's label.
    on_done : callable, optional
        ``on_done(k, result)`` in this process as task ``k`` completes (completion order on Dask).

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C: the tasks not finished are cancelled (tasks already running on an external cluster
        may still finish).
    ValueError
        A task's workers died too often (``KilledWorker``), naming the task.
    """
    with tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress or not tasks,
              dynamic_ncols=True) as bar:
        if client is None:
            for k, args in enumerate(tasks):
                result = function(*args)
                if on_done is not None:
                    on_done(k, result)
                bar.update(1)
            return
        distributed = _distributed()
        futures = [client.submit(function, *args, pure=False) for args in tasks]
        index = {future.key: k for k, future in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                k = index[future.key]
                try:
                    result = future.result()
                except distributed.KilledWorker as error:
                    raise ValueError(f"task {k + 1} of {len(tasks)} ({desc}): the Dask workers running it died too "
                                     f"often (out of memory? {' '.join(str(error).split())})") from None
                future.release()
                if on_done is not None:
                    on_done(k, result)
                bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise


__all__ = ["CONNECT_TIMEOUT", "SCHEDULERS", "check_scheduler_flags", "open_scheduler", "run_tasks",
           "set_worker_threads"]

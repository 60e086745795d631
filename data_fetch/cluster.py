"""Where data production runs: a Dask ``distributed`` client, the same code from a laptop to a cluster.

By default the work runs on a ``LocalCluster`` of one single-threaded worker process per core of
this machine. To run it elsewhere, name a Dask scheduler: ``--scheduler tcp://host:8786`` on the
command line or ``$MLHEP_DASK_SCHEDULER``. Whatever starts that scheduler's workers (dask-jobqueue
on Slurm or HTCondor, dask-kubernetes, a facility's Dask Gateway, ``dask worker`` by hand) only
needs this course installed in the workers' environment (``pip install -e .`` of this repository,
or the same container image): the tasks are functions of ``data_fetch``.

Results do not depend on the number or kind of workers: every task carries its own seed and
position, the client sorts the results by position, and only the client writes the cache.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin
from tqdm.auto import tqdm

from .errors import DataFetchError

SCHEDULER_VARIABLE = "MLHEP_DASK_SCHEDULER"
#: The workers of the LocalCluster share this machine's cores with the generation itself: no
#: statistical profiler sampling every task's stack every 10 ms (it is for the dashboard, which is off).
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
#: How many times Dask runs a task again when it raises. A task whose worker dies is another
#: matter: the scheduler runs it again on another worker by itself, and gives up (KilledWorker)
#: after its ``distributed.scheduler.allowed-failures`` deaths (3 by default).
TASK_RETRIES = 2
#: Seconds to wait for a named scheduler to answer.
CONNECT_TIMEOUT = "20s"


def default_workers() -> int:
    """Cores this process may use (its CPU affinity, which a batch system may restrict)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: ``scheduler`` if given, else ``$MLHEP_DASK_SCHEDULER``, else None (local)."""
    return scheduler or os.environ.get(SCHEDULER_VARIABLE) or None


def stdout_to_stderr() -> None:
    """Send this worker process's C++ chatter (FastJet's banner) to stderr, keeping stdout for results."""
    os.dup2(2, 1)


class StdoutToStderr(WorkerPlugin):
    """:func:`stdout_to_stderr` in every worker, those the nanny restarts after a crash included.

    The workers of a LocalCluster write to this process's standard output: in a notebook, the
    output of the cell that loads a dataset.
    """

    name = "data-fetch-stdout-to-stderr"

    def setup(self, worker) -> None:
        stdout_to_stderr()


@contextlib.contextmanager
def local_client(workers: int | None = None, config: dict | None = None) -> Iterator[Client]:
    """A ``distributed.Client`` on a LocalCluster of ``workers`` processes, closed after the block.

    Starting it takes a second or two; its workers are spawned processes with one thread each,
    since Pythia, FastJet and uproot's decompression hold the interpreter lock. ``config``: Dask
    settings for the cluster's scheduler and workers, on top of ``LOCAL_WORKER_CONFIG``.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A script without a main guard runs again in every spawned worker as it starts: this call
        # would start clusters without end. multiprocessing refuses the same way.
        raise DataFetchError(
            "a data_fetch worker process is starting and imported a script that loads data at its top "
            'level: put the script\'s code under `if __name__ == "__main__":` (as multiprocessing and Dask '
            "need), or load with workers=1"
        )
    with contextlib.ExitStack() as stack:
        # First in, last out: the nannies set variables in this process, which it gets back after the cluster.
        stack.enter_context(kept_environment())
        with dask.config.set({**LOCAL_WORKER_CONFIG, **(config or {})}):
            local_cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers or default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,  # no dashboard: a notebook or CI job does not need one
                    # The scheduler still serves its health checks over HTTP: on a free port, not on 8787, which
                    # another cluster of this machine (a student's own Dask) may hold, with a warning each time.
                    scheduler_kwargs={"dashboard_address": ":0"},
                    silence_logs=logging.ERROR,
                )
            )
        dask_client = stack.enter_context(Client(local_cluster))
        dask_client.register_plugin(StdoutToStderr())
        yield dask_client


#: What a nanny sets in the environment of the process that starts it (its own, so that the worker
#: it spawns inherits them), besides ``distributed.nanny.pre-spawn-environ``.
NANNY_ENVIRONMENT = ("PYTHONHASHSEED",)


@contextlib.contextmanager
def kept_environment() -> Iterator[None]:
    """Give this process back the environment variables a LocalCluster's nannies set in it.

    A nanny runs in the process that starts the cluster and sets its pre-spawn variables there
    (one thread of OpenMP, MKL and OpenBLAS, a fixed hash seed) before each worker starts: a
    notebook that loads data, or the grader, would keep them, and so would every process it
    starts afterwards (a kernel, a grading process).
    """
    names = {*dask.config.get("distributed.nanny.pre-spawn-environ", {}), *NANNY_ENVIRONMENT}
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def client(
    workers: int | None = None, scheduler: str | None = None, config: dict | None = None
) -> Iterator[Client]:
    """A ``distributed.Client``: on the named scheduler, or on a LocalCluster of ``workers`` processes.

    The scheduler is ``scheduler``, else ``$MLHEP_DASK_SCHEDULER``; with neither, a LocalCluster
    (:func:`local_client`) runs for the block. ``workers`` does not apply to a named scheduler:
    whoever started it decided how many workers it has, and ``config`` (Dask settings of the
    LocalCluster, see :func:`local_client`) does not apply either.
    """
    address = scheduler_address(scheduler)
    if not address:
        with local_client(workers, config) as dask_client:
            yield dask_client
        return
    failure = None
    try:
        dask_client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError) as exc:  # OSError: nobody answered; ValueError: not an address
        failure = str(exc)
    if failure is not None:
        # The half-made Client closes its event loop when the garbage collector frees it. Should
        # that happen while another Client starts, both wait for the same lock of distributed for
        # ever (seen with distributed 2025.3): free it now, outside any other Client.
        gc.collect()
        raise DataFetchError(
            f"no Dask scheduler answered at {address} ({failure}); check the address (--scheduler or "
            f"${SCHEDULER_VARIABLE}), or leave both unset to run on this machine"
        )
    with dask_client:
        yield dask_client


def worker_count(dask_client: Client) -> int:
    """How many workers the scheduler of ``dask_client`` has now."""
    return len(dask_client.nthreads())


def run_tasks(
    function: Callable,
    tasks: Sequence,
    sizes: Sequence[int],
    dask_client: Client,
    desc: str,
    progress: bool = True,
    retries: int = TASK_RETRIES,
) -> list:
    """Run ``function(task)`` for every task on ``dask_client``, with a progress bar in events.

    ``function`` must be importable by the workers (a top-level function of a module they have).
    Returns the results in the order of ``tasks``, whatever order they finish in. A task that
    raises runs again (``retries`` times; 0 for tasks that retry what is worth retrying themselves);
    a task whose worker dies runs again on another worker, or on the same one once its nanny has
    restarted it.
    """
    futures = dask_client.map(function, tasks, pure=False, retries=retries)
    position = {future.key: index for index, future in enumerate(futures)}
    results: list = [None] * len(tasks)
    with tqdm(total=sum(sizes), desc=desc, unit="ev", disable=not progress) as bar:
        for future in as_completed(futures):
            index = position[future.key]
            try:
                results[index] = future.result()
            except KilledWorker as exc:
                raise DataFetchError(
                    f"{desc}: task {index} killed every worker that ran it, so Dask gave up ({exc}); "
                    "a worker may run out of memory: see the workers' logs"
                ) from None
            bar.update(sizes[index])
            future.release()
    return results

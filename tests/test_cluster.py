"""data_fetch.cluster: the offline source on Dask workers.

The arrays do not depend on where the tasks run (this process, a process pool, a LocalCluster of
one or two workers, a named scheduler); a task whose worker dies runs again; a scheduler that does
not answer is a clear error; and where the events are made is no part of the cache key.

Each test starts its own small cluster (a second or two) and generates a few hundred events.
"""

import os
import re
import socket

import numpy as np
import pytest
from dataset_helpers import fake_produce
from distributed import LocalCluster

import data_fetch
from data_fetch import cluster, pythia_source
from data_fetch.__main__ import main as cli
from data_fetch.registry import CMS_AD

#: 300 events from seed 3: five tasks (two of QCD, one per other process), more than one per worker.
N_EVENTS, SEED = 300, 3


@pytest.fixture(scope="module")
def in_process():
    """The arrays made in this process (one worker, no cluster): what every engine must reproduce."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(cluster.SCHEDULER_VARIABLE, raising=False)
        arrays, metadata = pythia_source.produce(CMS_AD, N_EVENTS, SEED, progress=False, workers=1)
    assert metadata["engine"] == "in-process"
    return arrays


@pytest.fixture
def no_scheduler_variable(monkeypatch):
    """This machine's LocalCluster, whatever the environment of the test run names."""
    monkeypatch.delenv(cluster.SCHEDULER_VARIABLE, raising=False)


def small_local_cluster(workers: int) -> LocalCluster:
    """A LocalCluster started by the test, standing in for a facility's scheduler."""
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},  # not port 8787, which another cluster may hold
    )


def assert_same_arrays(arrays, expected):
    assert list(arrays) == list(expected)
    for name, values in expected.items():
        assert arrays[name].dtype == values.dtype, name
        assert np.array_equal(arrays[name], values), name


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_one_or_two_dask_workers_and_the_pool_make_the_same_arrays(in_process, no_scheduler_variable, capfd):
    two_workers, metadata = pythia_source.produce(CMS_AD, N_EVENTS, SEED, progress=False, workers=2)
    assert (metadata["engine"], metadata["workers"]) == ("dask", 2)
    assert 0 < metadata["fraction_of_time_in_pythia"] <= 1 and metadata["events_per_second"] > 0
    assert_same_arrays(two_workers, in_process)

    pooled, metadata = pythia_source.produce(CMS_AD, N_EVENTS, SEED, progress=False, workers=2, engine="pool")
    assert (metadata["engine"], metadata["workers"]) == ("pool", 2)
    assert_same_arrays(pooled, in_process)

    # One worker and no scheduler runs in this process, so a one-worker LocalCluster is named.
    with cluster.local_client(1) as one_worker:
        arrays, metadata = pythia_source.produce(
            CMS_AD, N_EVENTS, SEED, progress=False, scheduler=one_worker.scheduler.address
        )
    assert (metadata["engine"], metadata["workers"]) == ("dask", 1)
    assert_same_arrays(arrays, in_process)

    # The workers share this process's stdout (in a notebook: the cell's output); FastJet's banner
    # must go to stderr.
    printed = capfd.readouterr()
    assert "FastJet release" not in printed.out and "FastJet release" in printed.err


def test_a_named_scheduler_runs_the_tasks(in_process, monkeypatch):
    with small_local_cluster(2) as facility:
        # workers=1 alone would run in this process: that the scheduler reports 2 shows it ran there.
        arrays, metadata = pythia_source.produce(
            CMS_AD, N_EVENTS, SEED, progress=False, workers=1, scheduler=facility.scheduler_address
        )
        assert (metadata["engine"], metadata["workers"]) == ("dask", 2)
        assert_same_arrays(arrays, in_process)

        monkeypatch.setenv(cluster.SCHEDULER_VARIABLE, facility.scheduler_address)
        arrays, metadata = pythia_source.produce(CMS_AD, N_EVENTS, SEED, progress=False, workers=1)
        assert (metadata["engine"], metadata["workers"]) == ("dask", 2), "the scheduler of the environment"
        assert_same_arrays(arrays, in_process)


def doubled_unless_first_call(task):
    """``2 * value``; the first call of all (no marker file yet) kills its worker process instead."""
    marker, value = task
    if not os.path.exists(marker):
        with open(marker, "w") as file:
            file.write("a worker died here\n")
        os._exit(1)
    os.write(1, b"chatter on the stdout of a restarted worker\n")
    return 2 * value


def always_dies(task):
    os._exit(1)


def test_a_task_whose_worker_dies_runs_again(tmp_path, capfd):
    marker = str(tmp_path / "died")
    tasks = [(marker, value) for value in range(5)]
    with cluster.local_client(1) as dask_client:
        results = cluster.run_tasks(doubled_unless_first_call, tasks, [1] * 5, dask_client, "test", progress=False)
    assert os.path.exists(marker), "a worker must have died"
    assert results == [0, 2, 4, 6, 8]
    printed = capfd.readouterr()
    assert "chatter" not in printed.out and "chatter" in printed.err, "the restarted worker writes to stderr too"


def test_a_task_that_kills_every_worker_is_an_error():
    import dask

    # The scheduler gives up on a task after this many of its workers died (3 by default): 0 keeps the test short.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        cluster.local_client(1) as dask_client,
        pytest.raises(data_fetch.DataFetchError, match="task 0 killed every worker that ran it"),
    ):
        cluster.run_tasks(always_dies, [None], [1], dask_client, "test", progress=False)


@pytest.mark.parametrize("address", ["unused port", "not-an-address"])
def test_a_scheduler_that_does_not_answer_is_a_clear_error(address, data_dir, monkeypatch, capsys):
    address = f"tcp://127.0.0.1:{unused_port()}" if address == "unused port" else address
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    message = re.escape(f"no Dask scheduler answered at {address}")
    with pytest.raises(data_fetch.DataFetchError, match=message):
        pythia_source.produce(CMS_AD, 20, SEED, progress=False, scheduler=address)
    with pytest.raises(data_fetch.DataFetchError, match=message):
        data_fetch.load("cms_ad", n_events=20, seed=SEED, source="pythia", scheduler=address)
    assert not data_dir.exists() or not list(data_dir.rglob("*.npz"))

    assert cli(["fetch", "cms_ad", "--source", "pythia", "--n-events", "20", "--scheduler", address]) == 2
    assert f"no Dask scheduler answered at {address}" in capsys.readouterr().err
    assert cli(["fetch-course", "--scale", "ci", "--lesson", "00", "--scheduler", address]) == 2
    assert f"no Dask scheduler answered at {address}" in capsys.readouterr().err

    monkeypatch.setenv(cluster.SCHEDULER_VARIABLE, address)
    with pytest.raises(data_fetch.DataFetchError, match=re.escape(f"{cluster.SCHEDULER_VARIABLE}")):
        pythia_source.produce(CMS_AD, 20, SEED, progress=False, workers=1)


def test_the_cache_key_does_not_depend_on_where_the_events_are_made(data_dir, monkeypatch):
    monkeypatch.setattr(pythia_source, "produce", fake_produce)
    first = data_fetch.load("cms_ad", n_events=50, seed=SEED, source="pythia", workers=1)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the same events elsewhere must come from the cache")

    monkeypatch.setattr(pythia_source, "produce", must_not_run)
    dead = f"tcp://127.0.0.1:{unused_port()}"  # a cache hit does not even ask the scheduler
    monkeypatch.setenv(cluster.SCHEDULER_VARIABLE, dead)
    for where in (dict(workers=2), dict(scheduler=dead), dict(workers=3, scheduler=dead), {}):
        again = data_fetch.load("cms_ad", n_events=50, seed=SEED, source="pythia", **where)
        assert again.metadata["cache_key"] == first.metadata["cache_key"], where
    assert len(list((data_dir / "datasets").iterdir())) == 1


def test_workers_end_with_the_process_that_started_them(tmp_path):
    # A kernel restarted (or a script killed) during a production: its LocalCluster's workers must not
    # live on, using cores, after the process that held their scheduler and nannies is gone. (Dask's
    # worker processes watch their parent; this keeps it so.)
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "hold_a_cluster.py"
    script.write_text(
        "import time\n"
        "from data_fetch import cluster\n"
        "if __name__ == '__main__':\n"
        "    with cluster.local_client(2):\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        started = psutil.Process(holder.pid).children(recursive=True)
        # The two worker processes (their nannies run in the client's process) and multiprocessing's tracker.
        assert len(started) >= 2
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
        p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started
    ):
        time.sleep(0.5)
    left = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes of the killed client still running: {left}"


def test_this_process_gets_its_environment_back(monkeypatch):
    """The nannies of a LocalCluster set their workers' variables (one OpenMP thread, a fixed hash seed)
    in the process that starts them: a notebook, or the grader, has its own back after the cluster."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", "random")
    with cluster.local_client(1) as dask_client:
        # the workers got Dask's settings
        assert set(dask_client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["PYTHONHASHSEED"] == "random"

"""data_fetch: the checks every dataset must pass, once per dataset of tests/dataset_helpers.DATASETS.

The registry and `python -m data_fetch info` describe it, its arrays follow that description, labels
and process fractions hold by construction, the offline source is reproducible from the seed, the
cache key covers every setting, load() caches it, and bad input gets a clear error. The physics of
each dataset is in its own file (test_data_fetch.py for cms_ad, test_<name>_dataset.py).
"""

import ast
import dataclasses
import functools
import re

import numpy as np
import pytest
from dataset_helpers import DATASETS, fake_produce, generated, key, particle_batch, shape_of

import data_fetch
from data_fetch import dataset, opendata, pythia_source
from data_fetch.__main__ import main as cli
from data_fetch.registry import DATASETS as REGISTRY

each_dataset = pytest.mark.parametrize("case", DATASETS, ids=str)
#: Arrays that the offline source fills for every dataset; the builder of each makes the others.
COMMON_ARRAYS = {"label", "process", "weight"}


def test_every_dataset_of_the_registry_has_a_case():
    assert {case.name for case in DATASETS} == set(REGISTRY) == set(data_fetch.list_datasets())
    assert len(DATASETS) == len(REGISTRY), "one case per dataset"


# ----------------------------------------------------------------- registry and `info`


@each_dataset
def test_registry_describes_the_dataset(case, capsys):
    spec = case.spec
    assert spec is REGISTRY[case.name] and spec.name == case.name
    assert spec.sources == case.sources and spec.default_n_events == case.default_n_events
    assert tuple((p.name, p.code, p.label, p.fraction) for p in spec.processes) == case.processes
    assert sum(p.fraction for p in spec.processes) == pytest.approx(1)
    assert {p.label for p in spec.processes} == {0, 1}, "background and signal"
    assert set(spec.schema) >= COMMON_ARRAYS
    assert cli(["list"]) == 0
    assert any(line.split()[0] == case.name for line in capsys.readouterr().out.splitlines())
    assert cli(["info", case.name]) == 0
    out = capsys.readouterr().out
    for text in case.info_mentions:
        assert text in out, text
    assert f"sources: {', '.join(case.sources)}" in out
    assert f"default n_events: {case.default_n_events}" in out


def schema_from_info(name, capsys):
    """{array: (dtype, shape, description)} as `python -m data_fetch info NAME` lists them."""
    assert cli(["info", name]) == 0
    block = capsys.readouterr().out.split("\narrays:\n", 1)[1].split("\n\n", 1)[0]
    described = {}
    for line in block.splitlines():
        match = re.fullmatch(r"  (\w+) +(\w+) +(\(.*?\)) +(.*)", line)
        assert match, f"not an array's line: {line!r}"
        described[match[1]] = (np.dtype(match[2]), ast.literal_eval(match[3]), match[4])
    return described


# ----------------------------------------------------------------- generated arrays


@each_dataset
def test_arrays_follow_the_schema_that_info_describes(case, capsys):
    arrays, metadata = generated(case.name)
    schema = case.spec.schema
    described = schema_from_info(case.name, capsys)
    assert list(arrays) == list(schema) == list(described)
    for name, values in arrays.items():
        dtype, shape, description = described[name]
        assert values.dtype == np.dtype(schema[name].dtype) == dtype, name
        assert values.shape == shape_of(schema[name].shape, case.n_small) == shape_of(shape, case.n_small), name
        assert description == schema[name].description, name
        assert np.all(np.isfinite(values)), name
    assert 0 < metadata["fraction_of_time_in_pythia"] <= 1


@each_dataset
def test_labels_and_fractions_hold_by_construction(case):
    arrays, _ = generated(case.name)
    process, label, weight = arrays["process"], arrays["label"], arrays["weight"]
    codes, counts = np.unique(process, return_counts=True)
    assert dict(zip(codes.tolist(), counts.tolist())) == case.small_counts
    for p in case.spec.processes:
        assert np.all(label[process == p.code] == p.label), p.name
    assert np.all(weight > 0)
    if case.unit_weights:
        assert np.all(weight == 1)
    else:
        assert not np.all(weight == 1), "the pT-hat bias gives the events different weights"


@each_dataset
def test_plan_splits_by_the_process_fractions(case):
    tasks = pythia_source.plan_tasks(case.spec, case.plan_n, seed=0)
    assert sum(t.n_events for t in tasks) == case.plan_n
    per_process = {}
    for t in tasks:
        per_process[t.process.name] = per_process.get(t.process.name, 0) + t.n_events
    assert per_process == case.plan_counts
    assert all(0 < t.n_events <= pythia_source.TASK_SIZE for t in tasks)
    assert {t.dataset for t in tasks} == {case.name}
    assert len({t.seed for t in tasks}) == len(tasks), "every task needs its own seed"


@pytest.mark.parametrize(
    # Datasets of selected jets (top_tagging) build from jets, not events: their own file checks it.
    "case",
    [case for case in DATASETS if pythia_source.builder_for(case.name).build is not None],
    ids=str,
)
def test_the_builder_makes_the_schema_arrays(case):
    events = particle_batch(
        [
            [(100.0, 0, 0, 100.0, 22), (0, 60.0, 0, 60.0, 211), (-30.0, 0, 10.0, np.hypot(30, 10), 11)],
            [(30.0, 0, 0, 30.0, 12)],  # only a neutrino: nothing visible
            [],  # nothing at all
        ]
    )
    built = pythia_source.builder_for(case.name).build(events, np.random.default_rng(0))
    assert set(built) == set(case.spec.schema) - COMMON_ARRAYS
    for name, values in built.items():
        schema = case.spec.schema[name]
        assert values.dtype == np.dtype(schema.dtype) and values.shape == shape_of(schema.shape, 3), name


@each_dataset
def test_same_seed_same_events_whatever_the_workers_other_seed_other_events(case):
    generated(case.name)  # this process's generators have made events before: a reseed must reset them
    spec, n = case.spec, case.n_repro
    tasks = pythia_source.plan_tasks(spec, n, case.seed)
    assert {t.process.name for t in tasks} == {p.name for p in spec.processes}, "every process takes part"
    here, _ = pythia_source.produce(spec, n, case.seed, progress=False, workers=1)
    pooled, _ = pythia_source.produce(spec, n, case.seed, progress=False, workers=2)  # fresh generators
    assert list(pooled) == list(here)
    for name in here:
        np.testing.assert_array_equal(pooled[name], here[name], err_msg=name)
    other, _ = pythia_source.produce(spec, n, case.seed + 1, progress=False, workers=1)
    differ = np.any(other[case.varying].reshape(n, -1) != here[case.varying].reshape(n, -1), axis=1)
    assert np.mean(differ) > 0.9, f"{case.varying}: only {differ.sum()} of {n} events differ"


# ----------------------------------------------------------------- cache key and load()


@each_dataset
def test_cache_key_covers_every_setting(case, monkeypatch):
    spec = case.spec
    base = key(spec)
    if case.pinned_key:
        assert base == case.pinned_key, "the files already in users' caches must stay valid"
    others = {c.name: key(c.spec) for c in DATASETS if c is not case}
    assert base not in others.values()
    assert key(spec, n=10_001) != base and key(spec, seed=1) != base

    process_name, old, new = case.pythia_change
    processes = {p.name: p for p in spec.processes}
    settings = processes[process_name].pythia_settings
    if old is None:
        settings = settings + (new,)
    else:
        assert old in settings
        settings = tuple(new if line == old else line for line in settings)
    processes[process_name] = dataclasses.replace(processes[process_name], pythia_settings=settings)
    assert key(dataclasses.replace(spec, processes=tuple(processes.values()))) != base, (
        "a Pythia setting must change the key"
    )
    for i, p in enumerate(spec.processes):  # any setting of any process, its fraction and its label
        for changed in (
            dataclasses.replace(p, pythia_settings=p.pythia_settings + ("Next:numberCount = 1",)),
            dataclasses.replace(p, fraction=p.fraction / 2),
            dataclasses.replace(p, label=1 - p.label),
        ):
            processes = spec.processes[:i] + (changed,) + spec.processes[i + 1 :]
            assert key(dataclasses.replace(spec, processes=processes)) != base, p.name

    with monkeypatch.context() as patch:
        patch.setattr(
            pythia_source,
            "COMMON_PYTHIA_SETTINGS",
            pythia_source.COMMON_PYTHIA_SETTINGS + ("Next:numberCount = 1",),
        )
        assert key(spec) != base, "the settings every process shares"
    with monkeypatch.context() as patch:
        patch.setattr(pythia_source, "TASK_SIZE", pythia_source.TASK_SIZE + 1)
        assert key(spec) != base, "the task size decides which seed makes which event"
    with monkeypatch.context() as patch:
        patch.setattr(pythia_source, "pythia_version", lambda: "0.0.0")
        assert key(spec) != base, "the Pythia version"

    attribute, setting, value = case.builder_setting
    monkeypatch.setitem(functools.reduce(getattr, attribute.split("."), pythia_source), setting, value)
    assert key(spec) != base, "a setting of the builder must change the key"
    # Datasets built by the same builder (reweighting and shower_scan) share its settings.
    sharing = {c.name for c in DATASETS if c.builder_setting[0] == attribute}
    assert {c.name: key(c.spec) for c in DATASETS if c.name not in sharing} == {
        name: value for name, value in others.items() if name not in sharing
    }, "another dataset's builder setting must not change its key"
    assert all(key(c.spec) != others[c.name] for c in DATASETS if c.name in sharing and c is not case), (
        "datasets built by the same builder all depend on its settings"
    )


@each_dataset
def test_load_caches_and_a_changed_setting_is_a_cache_miss(case, data_dir, monkeypatch, capsys):
    made = []

    def counting_produce(spec, n_events, seed, progress=True, workers=None, scheduler=None):
        made.append((spec.name, n_events, seed))
        return fake_produce(spec, n_events, seed, progress)

    monkeypatch.setattr(pythia_source, "produce", counting_produce)
    first = data_fetch.load(case.name, n_events=50, seed=1, source="pythia")
    assert "source 'pythia'" in capsys.readouterr().out, "load() must say which source it used"
    assert (first.name, first.source, len(first)) == (case.name, "pythia", 50)
    assert (first.metadata["n_events"], first.metadata["seed"]) == (50, 1)
    files = list((data_dir / "datasets").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and files[0].name.startswith(f"{case.name}-pythia-")

    second = data_fetch.load(case.name, n_events=50, seed=1, source="pythia")
    assert made == [(case.name, 50, 1)], "the second load must come from the cache"
    assert list(second.arrays) == list(first.arrays)
    for name in first.arrays:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert second.metadata["cache_key"] == first.metadata["cache_key"]

    data_fetch.load(case.name, n_events=51, seed=1, source="pythia")
    data_fetch.load(case.name, n_events=50, seed=2, source="pythia")
    attribute, setting, value = case.builder_setting
    monkeypatch.setitem(functools.reduce(getattr, attribute.split("."), pythia_source), setting, value)
    changed = data_fetch.load(case.name, n_events=50, seed=1, source="pythia")
    assert made == [(case.name, 50, 1), (case.name, 51, 1), (case.name, 50, 2), (case.name, 50, 1)], (
        "another size, seed or builder setting is a cache miss"
    )
    assert changed.metadata["cache_key"] != first.metadata["cache_key"]
    assert len(list((data_dir / "datasets").iterdir())) == 4


@each_dataset
def test_cli_fetch_uses_the_cache(case, capsys, data_dir, monkeypatch):
    monkeypatch.setattr(pythia_source, "produce", fake_produce)
    assert cli(["fetch", case.name, "--source", "pythia", "--n-events", "20", "--seed", "2"]) == 0
    assert "20 events" in capsys.readouterr().out

    def must_not_run(*args, **kwargs):
        raise AssertionError("the second fetch must come from the cache")

    monkeypatch.setattr(pythia_source, "produce", must_not_run)
    assert cli(["fetch", case.name, "--source", "pythia", "--n-events", "20", "--seed", "2"]) == 0
    assert "20 events" in capsys.readouterr().out


# ----------------------------------------------------------------- sources


@each_dataset
def test_auto_asks_the_portal_only_for_a_dataset_with_open_data(case, data_dir, monkeypatch, capsys):
    asked = []

    def unreachable(*args, **kwargs):
        asked.append(True)
        return False, "test: no network"

    monkeypatch.setattr(opendata, "portal_reachable", unreachable)
    source, reason = dataset.resolve_source("auto", case.spec)
    if "opendata" in case.sources:
        assert asked and source == "pythia" and "not reachable" in reason
    else:
        assert not asked, "the CERN Open Data portal must not be asked"
        assert (source, reason) == ("pythia", "the only source of this dataset")
    monkeypatch.setattr(pythia_source, "produce", fake_produce)
    data = data_fetch.load(case.name, n_events=10, source="auto")
    assert data.source == "pythia" and len(data) == 10
    assert f"source 'pythia' ({reason})" in capsys.readouterr().out
    assert bool(asked) == ("opendata" in case.sources)


@each_dataset
def test_an_explicit_source_is_used_or_refused(case, data_dir, monkeypatch, capsys):
    def must_not_probe(*args, **kwargs):
        raise AssertionError("the CERN Open Data portal must not be asked")

    monkeypatch.setattr(opendata, "portal_reachable", must_not_probe)
    for source in case.sources:
        assert dataset.resolve_source(source, case.spec) == (source, "requested explicitly")
    choices = " or ".join(f'"{s}"' for s in (*case.sources, "auto"))
    for source in {"pythia", "opendata"} - set(case.sources):
        refusal = re.escape(f"no {source} source; use source={choices}")
        with pytest.raises(data_fetch.DataFetchError, match=refusal):
            data_fetch.load(case.name, n_events=10, source=source)
        assert not data_dir.exists() or not list(data_dir.rglob("*.npz"))
        assert cli(["fetch", case.name, "--source", source, "--n-events", "10"]) == 2
        assert f"no {source} source" in capsys.readouterr().err


# ----------------------------------------------------------------- bad input

BAD_ARGUMENTS = [
    (dict(source="cern"), "unknown source 'cern'; choose one of auto, pythia, opendata"),
    (dict(n_events=0), "n_events must be a positive integer, got 0"),
    (dict(n_events=-5), "n_events must be a positive integer, got -5"),
    (dict(n_events=2.5), "n_events must be a positive integer, got 2.5"),
    (dict(n_events=True), "n_events must be a positive integer, got True"),
    (dict(seed=-1), "seed must be a non-negative integer, got -1"),
    (dict(seed=1.5), "seed must be a non-negative integer, got 1.5"),
]


@each_dataset
@pytest.mark.parametrize(
    "kwargs, message", BAD_ARGUMENTS, ids=[",".join(f"{k}={v}" for k, v in kw.items()) for kw, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_give_clear_errors(case, kwargs, message, data_dir):
    with pytest.raises(data_fetch.DataFetchError, match=re.escape(message)):
        data_fetch.load(case.name, **{"n_events": 10, "source": "pythia", **kwargs})
    assert not data_dir.exists() or not list(data_dir.rglob("*.npz"))


@each_dataset
def test_unknown_dataset_and_bad_cli_arguments_exit_2(case, data_dir, capsys):
    typo = case.name + case.name[-1]  # cms_add
    known = ", ".join(sorted(REGISTRY))
    with pytest.raises(
        data_fetch.UnknownDatasetError, match=re.escape(f"unknown dataset {typo!r}; known datasets: {known}")
    ):
        data_fetch.load(typo, n_events=10, source="pythia")
    assert cli(["info", typo]) == 2
    assert f"unknown dataset {typo!r}" in capsys.readouterr().err
    assert cli(["fetch", typo, "--source", "pythia", "--n-events", "10"]) == 2
    assert f"unknown dataset {typo!r}" in capsys.readouterr().err
    assert cli(["fetch", case.name, "--source", "pythia", "--n-events", "0"]) == 2
    assert "n_events must be a positive integer" in capsys.readouterr().err
    assert not data_dir.exists() or not list(data_dir.rglob("*.npz"))

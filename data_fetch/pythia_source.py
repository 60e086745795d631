"""The offline source: Pythia 8 events, FastJet jets and a parametric detector model.

Each dataset turns the generated particles into its arrays with its own builder
(``BUILDERS``): ``cms_ad`` applies the detector model below and builds the object table
(:func:`reconstruct`); ``reweighting`` computes particle-level jet observables
(:func:`jet_observables`).

Detector model of ``cms_ad`` (the one place it is described):

* Particles: every final-state particle except neutrinos enters the detector if |eta| < 4.9.
* Leptons: an electron (muon) with pT > 10 GeV and |eta| < 2.5 (2.4) is *isolated* when the
  scalar pT sum of the other visible particles within Delta R < 0.3 is below 15% of its pT.
  Isolated leptons are reconstructed with Gaussian pT resolution sigma/pT = 2% (electrons) and
  sqrt(1%^2 + (1e-4 pT/GeV)^2) (muons), and are removed from the jet inputs.
* Jets: anti-kT R = 0.4 on the remaining visible particles (FastJet), with
  sigma/pT = sqrt((1.0/sqrt(pT/GeV))^2 + 5%^2) and Gaussian eta/phi resolution of 0.02.
* MET: minus the vector sum of visible particles, corrected for the jet mismeasurement
  (for jets above 15 GeV), plus Gaussian noise of 0.5 sqrt(sum E_T / GeV) GeV per component.
* No efficiencies, fakes or pile-up: a teaching model, not a CMS simulation.

Observables of ``reweighting`` (particle level, no detector model; settings in
``JET_OBSERVABLES``): anti-kT R = 0.8 jets (FastJet) on every final-state particle except
neutrinos with |eta| < 4.9, kept above 20 GeV and ordered by pT. For the leading jet: pT, eta,
mass, number of constituents, width (girth: the pT-weighted mean Delta R(eta, phi) of the
constituents to the jet axis) and pT dispersion p_T^D = sqrt(sum pT_i^2) / sum pT_i; the
second jet's mass; the number of jets with pT > 50 GeV and |eta| < 2.5 and their scalar pT sum
HT. These are the quantities the final-state shower coupling changes most: less radiation
means fewer constituents, narrower jets and a larger p_T^D. An event without any jet (not
expected at pT-hat > 300 GeV) gets zeros.

Observables of ``dijet_resonance`` (particle level; settings in ``LARGE_R_JETS``): anti-kT
R = 1.0 jets on the same visible particles, above 100 GeV, ordered by pT. The dijet mass of
the two leading jets and, per jet, pT, eta, mass and the N-subjettiness ratios tau21, tau32.
tau_N = sum_i pT_i min_k Delta R(i, axis_k) / (sum_i pT_i R) measures how well N axes (here
the N exclusive kT subjets of the jet's constituents) describe its energy flow: a W, X or Y
decaying to two quarks gives two prongs and a small tau21. The kT axes are not minimized, so
for a very narrow jet (tau1 near 0) the ratio can come out slightly above 1 (about 5% of jets,
at most 1.5 in 40 000 events). An event with fewer than two jets gets zeros for what it lacks.

Events are produced in tasks of ``TASK_SIZE`` events, each with its own seed derived from
(seed, process, task number), so the result does not depend on how many cores share the work nor
on where they are. The tasks run on a Dask client (:mod:`data_fetch.cluster`: a LocalCluster on this
machine, or a named scheduler); a process pool of this machine (``engine="pool"``) remains for
:func:`benchmark` to compare the two.
"""

from __future__ import annotations

import multiprocessing
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from . import cluster, cms_ad, top_tagging
from .cluster import default_workers  # also pythia_source.default_workers, for its callers
from .errors import DataFetchError
from .registry import COMMON_PYTHIA_SETTINGS, DatasetSpec, GeneratedProcess

TASK_SIZE = 200
DETECTOR = {
    "eta_max": 4.9,
    "iso_cone": 0.3,
    "iso_max": 0.15,
    "electron_resolution": 0.02,
    "muon_resolution": (0.01, 1e-4),
    "jet_resolution": (1.0, 0.05),
    "jet_angle_resolution": 0.02,
    "jet_radius": 0.4,
    "met_jet_threshold": 15.0,
    "met_noise": 0.5,
}
NEUTRINOS = (12, 14, 16)
#: Particle-level jets of the `reweighting` dataset (see the module docstring).
JET_OBSERVABLES = {
    "eta_max": 4.9,  # visible particles entering the clustering
    "jet_radius": 0.8,
    "jet_pt_min": 20.0,  # jets kept: the leading and second jet are the highest-pT ones above this
    "count_pt_min": 50.0,  # jets counted in n_jets and ht ...
    "count_eta_max": 2.5,  # ... inside this |eta|
}
#: Large-R jets of the `dijet_resonance` dataset (see the module docstring).
LARGE_R_JETS = {
    "eta_max": 4.9,
    "jet_radius": 1.0,
    "jet_pt_min": 100.0,
    "subjet_axes": "exclusive kT",  # the N axes of tau_N
}
#: Where :func:`produce` runs its tasks: on a Dask client, or on a process pool of this machine.
ENGINES = ("dask", "pool")


def pythia_version() -> str:
    from importlib.metadata import version

    return version("pythia8mc")


def cache_description(spec: DatasetSpec, n_events: int, seed: int) -> dict:
    """Everything the generated arrays depend on; its hash is the cache key."""
    return {
        "dataset": spec.name,
        "source": "pythia",
        "n_events": int(n_events),
        "seed": int(seed),
        "common": COMMON_PYTHIA_SETTINGS,
        "task_size": TASK_SIZE,
        "pythia8mc": pythia_version(),
        "processes": [(p.name, p.code, p.label, p.fraction, p.pythia_settings) for p in spec.processes],
        **builder_for(spec.name).settings(),
    }


@dataclass(frozen=True)
class Task:
    process: GeneratedProcess
    n_events: int
    seed: int
    index: int  # position in the final, unshuffled dataset
    dataset: str  # picks the builder (BUILDERS) that turns the particles into arrays


def plan_tasks(spec: DatasetSpec, n_events: int, seed: int) -> list[Task]:
    """Split the dataset into tasks: events per process by fraction, then chunks of TASK_SIZE."""
    counts = [int(round(p.fraction * n_events)) for p in spec.processes]
    counts[0] += n_events - sum(counts)  # rounding leftovers go to the first process
    tasks = []
    for process, count in zip(spec.processes, counts):
        for chunk, start in enumerate(range(0, count, TASK_SIZE)):
            task_seed = zlib.crc32(f"{seed}/{process.name}/{chunk}".encode()) % 900_000_000
            tasks.append(Task(process, min(TASK_SIZE, count - start), task_seed, len(tasks), spec.name))
    return tasks


# ---------------------------------------------------------------- worker side
_GENERATORS: dict = {}


def _generator(process: GeneratedProcess):
    """One initialized Pythia per process and worker; reseeded per task (no re-init)."""
    key = (process.name, process.pythia_settings)
    if key not in _GENERATORS:
        import pythia8mc

        pythia = pythia8mc.Pythia("", False)
        for line in COMMON_PYTHIA_SETTINGS + process.pythia_settings + ("Random:setSeed = on",):
            if not pythia.readString(line):
                raise ValueError(f"Pythia rejected the setting {line!r}")
        if not pythia.init():
            raise RuntimeError(f"Pythia failed to initialize process {process.name}")
        _GENERATORS[key] = pythia
    return _GENERATORS[key]


def _final_particles(event):
    """(px, py, pz, E, id) of the final-state particles, as five lists."""
    import pythia8mc

    particle = pythia8mc.Particle
    is_final, px, py, pz, e, pid = (
        particle.isFinal,
        particle.px,
        particle.py,
        particle.pz,
        particle.e,
        particle.id,
    )
    final = [p for p in event.particles() if is_final(p)]
    return (
        list(map(px, final)),
        list(map(py, final)),
        list(map(pz, final)),
        list(map(e, final)),
        list(map(pid, final)),
    )


def generate_particles(task: Task, bare: bool = False):
    """Run Pythia for one task. Returns (jagged particles, weights, seconds in pythia.next)."""
    pythia = _generator(task.process)
    pythia.rndm.init(task.seed)
    columns = {k: [] for k in ("px", "py", "pz", "E", "id")}
    counts, weights = [], []
    next_seconds, failures = 0.0, 0
    while len(counts) < task.n_events:
        t0 = time.perf_counter()
        ok = pythia.next()
        next_seconds += time.perf_counter() - t0
        if not ok:
            failures += 1
            if failures > 10 + task.n_events:
                raise RuntimeError(f"Pythia keeps failing for process {task.process.name}")
            continue
        weights.append(pythia.infoPython().weight())
        if bare:
            counts.append(0)
            continue
        for key, values in zip(columns, _final_particles(pythia.event)):
            columns[key].extend(values)
        counts.append(len(values))
    particles = ak.unflatten(
        ak.zip({k: np.asarray(v, dtype=np.float64 if k != "id" else np.int32) for k, v in columns.items()}), counts
    )
    return particles, np.asarray(weights, dtype=np.float32), next_seconds


def _isolated_lepton_mask(pt, eta, phi, pid, visible):
    """Per particle of one event: is it an isolated electron or muon inside the acceptance?"""
    apid = np.abs(pid)
    candidate = np.zeros(len(pt), dtype=bool)
    for pdg, kind in ((11, "electron"), (13, "muon")):
        pt_min, eta_max = cms_ad.SELECTION[kind]
        candidate |= (apid == pdg) & (pt > pt_min) & (np.abs(eta) < eta_max)
    mask = np.zeros(len(pt), dtype=bool)
    for i in np.flatnonzero(candidate):
        dphi = np.angle(np.exp(1j * (phi - phi[i])))
        near = visible & ((eta - eta[i]) ** 2 + dphi**2 < DETECTOR["iso_cone"] ** 2)
        mask[i] = pt[near].sum() - pt[i] < DETECTOR["iso_max"] * pt[i]
    return mask


def _visible(particles: ak.Array, eta, eta_max: float):
    """Per particle: does it reach the detector (not a neutrino, |eta| < eta_max)?"""
    absid = abs(particles.id)
    return ~((absid == NEUTRINOS[0]) | (absid == NEUTRINOS[1]) | (absid == NEUTRINOS[2])) & (abs(eta) < eta_max)


def reconstruct(particles: ak.Array, rng: np.random.Generator) -> np.ndarray:
    """Detector model + object table for a batch of events (see the module docstring)."""
    import fastjet

    px, py, pz = particles.px, particles.py, particles.pz
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    absid = abs(particles.id)
    visible = _visible(particles, eta, DETECTOR["eta_max"])

    counts = ak.to_numpy(ak.num(pt))
    flat = {
        k: ak.to_numpy(ak.flatten(v))
        for k, v in dict(pt=pt, eta=eta, phi=phi, id=particles.id, visible=visible).items()
    }
    isolated = np.zeros(len(flat["pt"]), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for i in range(len(counts)):
        s = slice(offsets[i], offsets[i + 1])
        isolated[s] = _isolated_lepton_mask(
            flat["pt"][s], flat["eta"][s], flat["phi"][s], flat["id"][s], flat["visible"][s]
        )
    isolated = ak.unflatten(isolated, counts)

    def smeared_leptons(pdg, resolution):
        sel = isolated & (absid == pdg)
        lep_pt = pt[sel]
        sigma = resolution(lep_pt)
        n = ak.to_numpy(ak.flatten(lep_pt))
        factor = 1 + rng.normal(size=len(n)) * ak.to_numpy(ak.flatten(sigma))
        return ak.zip(
            {"pt": ak.unflatten(n * np.maximum(factor, 0), ak.num(lep_pt)), "eta": eta[sel], "phi": phi[sel]}
        )

    electrons = smeared_leptons(11, lambda x: DETECTOR["electron_resolution"] + 0 * x)
    a, b = DETECTOR["muon_resolution"]
    muons = smeared_leptons(13, lambda x: np.sqrt(a**2 + (b * x) ** 2))

    jet_inputs = particles[visible & ~isolated]
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, DETECTOR["jet_radius"])
    jets = fastjet.ClusterSequence(jet_inputs[["px", "py", "pz", "E"]], jetdef).inclusive_jets(
        min_pt=DETECTOR["met_jet_threshold"]
    )
    jet_pt = np.hypot(jets.px, jets.py)
    jet_eta = np.arcsinh(jets.pz / np.maximum(jet_pt, 1e-9))
    jet_phi = np.arctan2(jets.py, jets.px)
    stoch, const = DETECTOR["jet_resolution"]
    flat_pt = ak.to_numpy(ak.flatten(jet_pt))
    sigma = np.sqrt(stoch**2 / np.maximum(flat_pt, 1e-9) + const**2)
    smeared_pt = flat_pt * np.maximum(1 + rng.normal(size=len(flat_pt)) * sigma, 0)
    angle = DETECTOR["jet_angle_resolution"]
    n_jets = ak.num(jet_pt)
    jets_reco = ak.zip(
        {
            "pt": ak.unflatten(smeared_pt, n_jets),
            "eta": ak.unflatten(ak.to_numpy(ak.flatten(jet_eta)) + rng.normal(size=len(flat_pt)) * angle, n_jets),
            "phi": ak.unflatten(ak.to_numpy(ak.flatten(jet_phi)) + rng.normal(size=len(flat_pt)) * angle, n_jets),
        }
    )
    jets_reco = ak.with_field(jets_reco, np.angle(np.exp(1j * jets_reco.phi)), "phi")

    # MET: recoil of everything visible, corrected by how much the jets were mismeasured.
    vis_px = ak.to_numpy(ak.sum(px[visible], axis=1))
    vis_py = ak.to_numpy(ak.sum(py[visible], axis=1))
    delta = jets_reco.pt - jet_pt
    met_x = -vis_px - ak.to_numpy(ak.sum(delta * np.cos(jet_phi), axis=1))
    met_y = -vis_py - ak.to_numpy(ak.sum(delta * np.sin(jet_phi), axis=1))
    sum_et = ak.to_numpy(ak.sum(pt[visible], axis=1))
    noise = DETECTOR["met_noise"] * np.sqrt(sum_et)
    met_x = met_x + rng.normal(size=len(met_x)) * noise
    met_y = met_y + rng.normal(size=len(met_y)) * noise
    return cms_ad.build_objects(np.hypot(met_x, met_y), np.arctan2(met_y, met_x), electrons, muons, jets_reco)


def _nth(values: ak.Array, n: int) -> np.ndarray:
    """The ``n``-th entry of each event's list as float32, 0 where the list is shorter."""
    padded = ak.pad_none(values, n + 1, axis=1, clip=True)[:, n]
    return ak.to_numpy(ak.fill_none(padded, 0.0)).astype(np.float32)


def _pt_ordered_jets(particles: ak.Array, config: dict) -> tuple[ak.Array, ak.Array]:
    """Anti-kT jets of the visible particles above config["jet_pt_min"], and their constituents,
    both ordered by decreasing jet pT (FastJet does not sort them)."""
    import fastjet

    pt = np.hypot(particles.px, particles.py)
    eta = np.arcsinh(particles.pz / np.maximum(pt, 1e-9))
    visible = _visible(particles, eta, config["eta_max"])
    inputs = particles[visible][["px", "py", "pz", "E"]]
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, config["jet_radius"])
    sequence = fastjet.ClusterSequence(inputs, jetdef)
    jets = sequence.inclusive_jets(min_pt=config["jet_pt_min"])
    constituents = sequence.constituents(min_pt=config["jet_pt_min"])  # same jet order as `jets`
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False)
    return jets[order], constituents[order]


def jet_observables(particles: ak.Array) -> dict[str, np.ndarray]:
    """Particle-level jet observables of the `reweighting` dataset for a batch of events.

    Returns the float32 arrays ``jet_pt, jet_eta, jet_mass, jet_n_constituents, jet_width,
    jet_ptd, jet2_mass, n_jets, ht`` (see the module docstring); zeros for an event without jets.
    """
    config = JET_OBSERVABLES
    jets, constituents = _pt_ordered_jets(particles, config)
    jet_pt = np.hypot(jets.px, jets.py)
    jet_eta = np.arcsinh(jets.pz / np.maximum(jet_pt, 1e-9))
    jet_phi = np.arctan2(jets.py, jets.px)
    jet_mass = np.sqrt(np.maximum(jets.E**2 - jets.px**2 - jets.py**2 - jets.pz**2, 0.0))

    # Constituents of the leading jet, with Delta R to its axis (None for an event without jets).
    lead = ak.firsts(constituents, axis=1)
    c_pt = np.hypot(lead.px, lead.py)
    c_eta = np.arcsinh(lead.pz / np.maximum(c_pt, 1e-9))
    d_phi = np.arctan2(lead.py, lead.px) - ak.firsts(jet_phi, axis=1)
    d_phi = (d_phi + np.pi) % (2 * np.pi) - np.pi
    delta_r = np.sqrt((c_eta - ak.firsts(jet_eta, axis=1)) ** 2 + d_phi**2)
    sum_pt = ak.sum(c_pt, axis=1)

    def per_event(values):
        return ak.to_numpy(ak.fill_none(values, 0.0)).astype(np.float32)

    counted = (jet_pt > config["count_pt_min"]) & (abs(jet_eta) < config["count_eta_max"])
    return {
        "jet_pt": _nth(jet_pt, 0),
        "jet_eta": _nth(jet_eta, 0),
        "jet_mass": _nth(jet_mass, 0),
        "jet_n_constituents": per_event(ak.num(lead, axis=1)),
        "jet_width": per_event(ak.sum(c_pt * delta_r, axis=1) / sum_pt),
        "jet_ptd": per_event(np.sqrt(ak.sum(c_pt**2, axis=1)) / sum_pt),
        "jet2_mass": _nth(jet_mass, 1),
        "n_jets": per_event(ak.sum(counted, axis=1)),
        "ht": per_event(ak.sum(jet_pt[counted], axis=1)),
    }


def _rapidity_phi(px, py, pz, e):
    rapidity = 0.5 * np.log(np.maximum(e + pz, 1e-9) / np.maximum(e - pz, 1e-9))
    return rapidity, np.arctan2(py, px)


def nsubjettiness(constituents: ak.Array, n_max: int = 3, radius: float = 1.0) -> np.ndarray:
    """tau_1 ... tau_n_max of each jet, as an (n_jets, n_max) array.

    ``constituents`` holds one list of (px, py, pz, E) particles per jet. The axes are the
    jet's N exclusive kT subjets; a jet with fewer than ``n_max`` particles gets zeros.
    """
    import warnings

    import fastjet

    taus = np.zeros((len(constituents), n_max), dtype=np.float64)
    counts = ak.to_numpy(ak.num(constituents, axis=1))
    enough = counts >= n_max
    if not enough.any():
        return taus
    particles = constituents[enough]
    counts = counts[enough]
    px, py, pz, e = (ak.to_numpy(ak.flatten(particles[c])) for c in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    rapidity, phi = _rapidity_phi(px, py, pz, e)
    jet_of_particle = np.repeat(np.arange(len(counts)), counts)
    norm = np.bincount(jet_of_particle, weights=pt, minlength=len(counts)) * radius
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.kt_algorithm, radius))
    for n in range(1, n_max + 1):
        with warnings.catch_warnings():
            # fastjet 3.5.2.0 warns here for every algorithm, kT included (it compares the
            # JetDefinition with the algorithm enum); the warning does not apply to kT.
            warnings.filterwarnings("ignore", message="dcut and exclusive jets")
            axes = sequence.exclusive_jets(n_jets=n)  # exactly n per jet
        axis_y, axis_phi = _rapidity_phi(*(ak.to_numpy(axes[c]) for c in ("px", "py", "pz", "E")))
        nearest = np.full(len(pt), np.inf)
        for k in range(n):
            d_phi = (phi - axis_phi[jet_of_particle, k] + np.pi) % (2 * np.pi) - np.pi
            d_y = rapidity - axis_y[jet_of_particle, k]
            nearest = np.minimum(nearest, np.sqrt(d_y**2 + d_phi**2))
        taus[enough, n - 1] = np.bincount(jet_of_particle, weights=pt * nearest, minlength=len(counts)) / norm
    return taus


def _ratio(numerator, denominator):
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def large_r_dijets(particles: ak.Array) -> dict[str, np.ndarray]:
    """Arrays of the `dijet_resonance` dataset for a batch of events (module docstring)."""
    config = LARGE_R_JETS
    jets, constituents = _pt_ordered_jets(particles, config)
    jets, constituents = jets[:, :2], constituents[:, :2]

    n_events = len(jets)
    n_jets = ak.to_numpy(ak.num(jets, axis=1))
    arrays = {"mjj": np.zeros(n_events, dtype=np.float32)}
    two = n_jets == 2
    pair = jets[two]
    e, px, py, pz = (ak.to_numpy(ak.sum(pair[c], axis=1)) for c in ("E", "px", "py", "pz"))
    arrays["mjj"][two] = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))

    taus = nsubjettiness(ak.flatten(constituents, axis=1), n_max=3, radius=config["jet_radius"])
    tau21, tau32 = _ratio(taus[:, 1], taus[:, 0]), _ratio(taus[:, 2], taus[:, 1])
    flat = ak.flatten(jets, axis=1)
    jet_pt = ak.to_numpy(np.hypot(flat.px, flat.py))
    values = {
        "pt": jet_pt,
        "eta": np.arcsinh(ak.to_numpy(flat.pz) / np.maximum(jet_pt, 1e-9)),
        "mass": np.sqrt(np.maximum(ak.to_numpy(flat.E**2 - flat.px**2 - flat.py**2 - flat.pz**2), 0.0)),
        "tau21": tau21,
        "tau32": tau32,
    }
    first = np.concatenate([[0], np.cumsum(n_jets)[:-1]])  # index of each event's leading jet
    for i in (1, 2):
        has = n_jets >= i
        for name, flat_values in values.items():
            column = np.zeros(n_events, dtype=np.float32)
            column[has] = flat_values[first[has] + i - 1]
            arrays[f"jet{i}_{name}"] = column
    return arrays


@dataclass(frozen=True)
class Builder:
    """How one dataset turns a batch of generated particles into its per-event arrays."""

    build: Callable[[ak.Array, np.random.Generator], dict] | None  # (particles, rng) -> {name: array}
    settings: Callable[[], dict]  # what the arrays depend on besides Pythia (enters the cache key)
    #: A dataset whose rows are selected jets, not events, generates until it has enough:
    #: task -> (arrays, weights, seconds in pythia.next), replacing generate_particles + build.
    generate: Callable[[Task], tuple[dict, np.ndarray, float]] | None = None


def _build_cms_ad(particles: ak.Array, rng: np.random.Generator) -> dict:
    return {"objects": reconstruct(particles, rng)}


def _build_reweighting(particles: ak.Array, rng: np.random.Generator) -> dict:
    return jet_observables(particles)  # particle level: no smearing, the rng goes unused


BUILDERS = {
    "cms_ad": Builder(_build_cms_ad, lambda: {"detector": DETECTOR, "selection": cms_ad.SELECTION}),
    "reweighting": Builder(_build_reweighting, lambda: {"jet_observables": JET_OBSERVABLES}),
    "shower_scan": Builder(_build_reweighting, lambda: {"jet_observables": JET_OBSERVABLES}),
    "dijet_resonance": Builder(
        lambda particles, rng: large_r_dijets(particles),  # no smearing
        lambda: {"large_r_jets": LARGE_R_JETS},
    ),
    "top_tagging": Builder(None, top_tagging.settings, top_tagging.generate_jets),
}


def builder_for(name: str) -> Builder:
    try:
        return BUILDERS[name]
    except KeyError:
        raise DataFetchError(
            f"the pythia source has no builder for dataset {name!r}; it builds {', '.join(sorted(BUILDERS))}"
        ) from None


def run_task(task: Task) -> dict:
    """Worker entry point: generate, build the dataset's arrays, return them and timings."""
    start = time.perf_counter()
    builder = builder_for(task.dataset)
    if builder.generate is not None:
        arrays, weights, next_seconds = builder.generate(task)
    else:
        particles, weights, next_seconds = generate_particles(task)
        arrays = builder.build(particles, np.random.default_rng(task.seed))
    n = task.n_events
    arrays = {
        **arrays,
        "weight": weights,
        "label": np.full(n, task.process.label, dtype=np.int8),
        "process": np.full(n, task.process.code, dtype=np.int8),
    }
    return {
        "index": task.index,
        "arrays": arrays,
        "seconds": time.perf_counter() - start,
        "next_seconds": next_seconds,
    }


def run_bare_task(task: Task) -> dict:
    """The reference: the same Pythia configuration, only ``pythia.next()``."""
    start = time.perf_counter()
    generate_particles(task, bare=True)
    return {"index": task.index, "seconds": time.perf_counter() - start}


def _map(function, tasks, workers, progress, desc):
    """Run tasks on a pool of ``workers`` processes (spawned: safe inside a Jupyter kernel), or in
    this process for one worker."""
    bar = tqdm(total=sum(t.n_events for t in tasks), desc=desc, unit="ev", disable=not progress)
    results = []
    if workers == 1:
        for task in tasks:
            results.append(function(task))
            bar.update(task.n_events)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=cluster.stdout_to_stderr) as pool:
            sizes = {t.index: t.n_events for t in tasks}
            for result in pool.imap_unordered(function, tasks):
                results.append(result)
                bar.update(sizes[result["index"]])
    bar.close()
    return sorted(results, key=lambda r: r["index"])


def produce(
    spec: DatasetSpec,
    n_events: int,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    engine: str = "dask",
) -> tuple[dict, dict]:
    """Generate ``n_events`` events of ``spec``; returns (arrays, metadata).

    With ``engine="dask"`` the tasks run on the Dask scheduler ``scheduler`` (else
    ``$MLHEP_DASK_SCHEDULER``), or on a LocalCluster of ``workers`` processes started for this
    call; with ``engine="pool"``, on a pool of ``workers`` processes of this machine. One worker
    and no scheduler: the tasks run in this process, nothing is started. The arrays are the same
    whatever the engine, the workers or the scheduler.
    """
    if engine not in ENGINES:
        raise DataFetchError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "pool" and scheduler:
        raise DataFetchError("the pool engine runs on this machine only; a Dask scheduler needs engine='dask'")
    address = cluster.scheduler_address(scheduler) if engine == "dask" else None
    workers = workers or default_workers()
    builder_for(spec.name)  # fail here, not in the workers, for a dataset without a builder
    tasks = plan_tasks(spec, n_events, seed)
    desc = f"Pythia {spec.name}"
    start = time.perf_counter()
    if address is None and workers == 1:
        engine = "in-process"
        results = _map(run_task, tasks, 1, progress, desc)
    elif engine == "pool":
        results = _map(run_task, tasks, workers, progress, desc)
    else:
        with cluster.client(workers, address) as dask_client:
            sizes = [task.n_events for task in tasks]
            results = cluster.run_tasks(run_task, tasks, sizes, dask_client, desc, progress)
            if address is not None:
                workers = cluster.worker_count(dask_client)
    wall = time.perf_counter() - start
    built = set(results[0]["arrays"])
    if built != set(spec.schema):
        raise RuntimeError(
            f"the builder of {spec.name!r} made arrays {sorted(built)}, its schema lists {sorted(spec.schema)}"
        )
    order = np.random.default_rng(seed).permutation(n_events)
    arrays = {}
    for name, schema in spec.schema.items():
        values = np.concatenate([r["arrays"][name] for r in results])
        arrays[name] = values.astype(schema.dtype, copy=False)[order]
    metadata = {
        "generator": f"pythia8mc {pythia_version()}",
        "engine": engine,
        "workers": workers,
        "events_per_second": round(n_events / wall, 1),
        "fraction_of_time_in_pythia": round(
            sum(r["next_seconds"] for r in results) / sum(r["seconds"] for r in results), 3
        ),
    }
    return arrays, metadata


def benchmark(
    spec: DatasetSpec, n_events: int, seed: int = 0, workers: int | None = None, progress: bool = True
) -> dict:
    """Throughput of the pipeline against a bare Pythia loop, and of the two engines, in one run.

    Three timings of the same tasks on ``workers`` processes: a bare Pythia loop (only
    ``pythia.next()``) and the full pipeline on a process pool, then the full pipeline on a Dask
    LocalCluster. Each includes starting and stopping its workers, since whoever generates a
    dataset waits for that too: the pool's spawn and the LocalCluster's start-up and close. The
    start-up alone is reported as ``dask_startup_seconds``. With ``workers=1`` the pool runs are
    in this process, warmed up, with nothing to start, while Dask still starts a worker: compare
    the engines with 2 workers or more.

    The ratios are of events per second: ``pool_over_bare`` is what the pipeline costs on top of
    Pythia (below 1), ``dask_over_pool`` what Dask costs against the pool.
    """
    workers = workers or default_workers()
    tasks = plan_tasks(spec, n_events, seed)
    if workers == 1:
        # In-process runs share initialized generators and imports: warm both paths up first.
        warm_up = Task(spec.processes[0], 2, seed, 0, spec.name)
        run_bare_task(warm_up)
        run_task(warm_up)
        for process in spec.processes:
            _generator(process)
    # With a pool, each run starts fresh workers, so both pay the same initialization.
    timings = {}
    for name, function in (("bare_pythia", run_bare_task), ("pool", run_task)):
        start = time.perf_counter()
        _map(function, tasks, workers, progress, name)
        timings[name] = time.perf_counter() - start
    start = time.perf_counter()
    with cluster.local_client(workers) as dask_client:  # a LocalCluster, whatever $MLHEP_DASK_SCHEDULER says
        startup = time.perf_counter() - start
        cluster.run_tasks(run_task, tasks, [task.n_events for task in tasks], dask_client, "dask", progress)
    timings["dask"] = time.perf_counter() - start
    return {
        "n_events": n_events,
        "workers": workers,
        "bare_pythia_events_per_second": round(n_events / timings["bare_pythia"], 1),
        "pool_events_per_second": round(n_events / timings["pool"], 1),
        "dask_events_per_second": round(n_events / timings["dask"], 1),
        "dask_startup_seconds": round(startup, 2),
        "pool_over_bare": round(timings["bare_pythia"] / timings["pool"], 3),
        "dask_over_bare": round(timings["bare_pythia"] / timings["dask"], 3),
        "dask_over_pool": round(timings["pool"] / timings["dask"], 3),
    }

"""The registry of named datasets: what each holds, and how each source makes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UnknownDatasetError

#: Settings every generated process shares (13 TeV pp, quiet output).
COMMON_PYTHIA_SETTINGS = (
    "Beams:eCM = 13000.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
)


@dataclass(frozen=True)
class ArraySchema:
    """One array of a dataset: its dtype, shape (``n`` = number of events) and meaning."""

    dtype: str
    shape: tuple
    description: str


@dataclass(frozen=True)
class GeneratedProcess:
    """One physics process of the offline (Pythia) source."""

    name: str
    code: int  # value stored in the dataset's ``process`` array
    label: int  # 0 = background, 1 = signal
    fraction: float  # share of the dataset's events
    pythia_settings: tuple


@dataclass(frozen=True)
class OpenDataRecord:
    """One CERN Open Data record used by the `opendata` source."""

    recid: int
    process_code: int
    label: int
    fraction: float
    title: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    schema: dict
    default_n_events: int
    processes: tuple = ()
    opendata_records: tuple = ()
    notes: str = ""
    sources: tuple = field(default=("pythia", "opendata"))


_QCD_SETTINGS = (
    "HardQCD:all = on",
    # Like the CMS "Flat" QCD sample: a pT-hat bias spreads events over the
    # spectrum instead of piling them at the lower edge; each event carries
    # the compensating weight in `weight`.
    "PhaseSpace:pTHatMin = 150.",
    "PhaseSpace:bias2Selection = on",
    "PhaseSpace:bias2SelectionPow = 4.",
    "PhaseSpace:bias2SelectionRef = 150.",
)
_WJETS_SETTINGS = (
    "WeakBosonAndParton:qqbar2Wg = on",
    "WeakBosonAndParton:qg2Wq = on",
    "PhaseSpace:pTHatMin = 100.",
    "24:onMode = off",
    "24:onIfAny = 11 13 15",
)
_ZJETS_SETTINGS = (
    "WeakBosonAndParton:qqbar2gmZg = on",
    "WeakBosonAndParton:qg2gmZq = on",
    "WeakZ0:gmZmode = 2",
    "PhaseSpace:pTHatMin = 100.",
    "23:onMode = off",
    "23:onIfAny = 11 13 15",
)
_GRAVITON_SETTINGS = (
    "ExtraDimensionsG*:all = on",
    "ExtraDimensionsG*:SMinBulk = on",
    "ExtraDimensionsG*:VLVL = on",
    "5100039:m0 = 2000.",
    "5100039:onMode = off",
    "5100039:onIfAny = 24",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4 5",
)

CMS_AD = DatasetSpec(
    name="cms_ad",
    description=(
        "Anomaly detection on CMS-like events: background (QCD multijet, plus W/Z+jets in the "
        "offline source) vs a bulk Randall-Sundrum graviton of 2 TeV decaying to two hadronic W "
        "bosons. Fixed-size table of MET, electrons, muons and jets per event (lesson 01)."
    ),
    schema={
        "objects": ArraySchema(
            "float32",
            ("n", 19, 3),
            (
                "(pT [GeV], eta, phi) per slot: 0 MET (eta=0), 1-4 electrons, 5-8 muons, 9-18 "
                "anti-kT R=0.4 jets; pT-ordered within each type, zero-padded (pT=0 means empty)"
            ),
        ),
        "label": ArraySchema("int8", ("n",), "0 = background, 1 = signal (graviton)"),
        "process": ArraySchema(
            "int8", ("n",), ("0 QCD multijet, 1 W(->lnu)+jets, 2 Z/gamma*(->ll)+jets, 3 bulk G*(2 TeV)->WW")
        ),
        "weight": ArraySchema(
            "float32",
            ("n",),
            (
                "generator weight (pT-hat bias of the QCD sample); lesson 01 treats events as "
                "unweighted, as the CMS exercise it comes from did"
            ),
        ),
    },
    default_n_events=200_000,
    processes=(
        GeneratedProcess("qcd", 0, 0, 0.70, _QCD_SETTINGS),
        GeneratedProcess("wjets", 1, 0, 0.07, _WJETS_SETTINGS),
        GeneratedProcess("zjets", 2, 0, 0.03, _ZJETS_SETTINGS),
        GeneratedProcess("graviton_ww", 3, 1, 0.20, _GRAVITON_SETTINGS),
    ),
    opendata_records=(
        OpenDataRecord(63168, 0, 0, 0.80, "QCD_Pt-15to7000_TuneCP5_Flat2018_13TeV_pythia8 NanoAODv9 (2016 UL)"),
        OpenDataRecord(
            33703, 3, 1, 0.20, "BulkGravToWWToWhadWhad_narrow_M-2000_TuneCP5_13TeV-madgraph-pythia NanoAOD"
        ),
    ),
    notes=(
        "Object layout: data_fetch.cms_ad. Offline source: 80% background (QCD 70%, W+jets 7%, "
        "Z+jets 3%; a cocktail, not cross-section weighted) and 20% signal. Open data source: "
        "80% QCD, 20% signal."
    ),
)

_DIJET_SETTINGS = (
    "HardQCD:all = on",
    "PhaseSpace:pTHatMin = 300.",
    # Multiparton interactions cost 3-5x the generation time; both samples switch them off,
    # so the only difference between them stays the final-state shower coupling.
    "PartonLevel:MPI = off",
)
_F32 = ("n",)

REWEIGHTING = DatasetSpec(
    name="reweighting",
    description=(
        "Classifier-based reweighting between two Pythia configurations: QCD dijets "
        "(pT-hat > 300 GeV) with the nominal final-state shower coupling vs a lower one "
        "(TimeShower:alphaSvalue 0.1365 -> 0.115). Observables of the leading anti-kT R=0.8 jets "
        "at particle level (lesson 02)."
    ),
    schema={
        "label": ArraySchema("int8", _F32, "0 = nominal, 1 = varied (lower FSR alpha_s)"),
        "process": ArraySchema("int8", _F32, "0 nominal, 1 fsr_alphas_low (same codes as label)"),
        "weight": ArraySchema("float32", _F32, "generator weight (1 here: no pT-hat bias)"),
        "jet_pt": ArraySchema("float32", _F32, "leading jet pT [GeV]"),
        "jet_eta": ArraySchema("float32", _F32, "leading jet pseudorapidity"),
        "jet_mass": ArraySchema("float32", _F32, "leading jet mass [GeV]"),
        "jet_n_constituents": ArraySchema(
            "float32", _F32, ("number of particles in the leading jet (a count, stored as float32)")
        ),
        "jet_width": ArraySchema(
            "float32",
            _F32,
            (
                "leading jet girth: pT-weighted mean Delta R(eta, phi) of its constituents to the jet "
                "axis (dimensionless)"
            ),
        ),
        "jet_ptd": ArraySchema(
            "float32",
            _F32,
            (
                "leading jet pT dispersion sqrt(sum pT_i^2) / sum pT_i over its constituents "
                "(dimensionless; 1 = one particle carries everything)"
            ),
        ),
        "jet2_mass": ArraySchema("float32", _F32, "second jet mass [GeV]; 0 if there is none"),
        "n_jets": ArraySchema(
            "float32", _F32, ("number of jets with pT > 50 GeV and |eta| < 2.5 (a count, stored as float32)")
        ),
        "ht": ArraySchema("float32", _F32, ("scalar sum of the pT of the jets counted in n_jets [GeV]")),
    },
    default_n_events=200_000,
    processes=(
        GeneratedProcess(
            "nominal", 0, 0, 0.5, _DIJET_SETTINGS + ("TimeShower:alphaSvalue = 0.1365",)
        ),  # Pythia's default
        GeneratedProcess("fsr_alphas_low", 1, 1, 0.5, _DIJET_SETTINGS + ("TimeShower:alphaSvalue = 0.115",)),
    ),
    notes=(
        "Particle level: no detector model. Jets: anti-kT R=0.8 (FastJet) on every visible "
        "final-state particle (neutrinos excluded) with |eta| < 4.9; the leading and second jets "
        "are the two highest-pT jets above 20 GeV. Both samples: QCD dijets, pT-hat > 300 GeV, "
        "multiparton interactions off (3-5x faster generation; both samples share it). "
        "The only difference: the final-state shower coupling TimeShower:alphaSvalue, 0.1365 "
        "(Pythia's default, label 0) vs 0.115 (label 1), 50% each. Less radiation in the varied "
        "sample: its jets have fewer constituents and are narrower (smaller jet_width, larger "
        "jet_ptd); medians at 10 000 events, nominal vs varied: 49 vs 43 constituents, width "
        "0.077 vs 0.062, p_T^D 0.286 vs 0.311, mass 53.9 vs 47.8 GeV. Only the pythia source "
        "exists for this dataset."
    ),
    sources=("pythia",),
)

# DCTR (lesson 02): the same dijets at several final-state shower couplings. Pythia's default is
# 0.1365; the grid spans it, and the "pseudo-data" value lies between grid points, so that a fit
# must interpolate.
SHOWER_SCAN_NOMINAL = 0.1365
SHOWER_SCAN_GRID = (0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16)
SHOWER_SCAN_PSEUDO_DATA = 0.1225
_SHOWER_SCAN_SAMPLES = (
    ("nominal", SHOWER_SCAN_NOMINAL, 0.30),
    *((f"grid_{round(1000 * value)}", value, 0.08) for value in SHOWER_SCAN_GRID),
    ("pseudo_data", SHOWER_SCAN_PSEUDO_DATA, 0.14),
)
#: TimeShower:alphaSvalue of each process code of the shower_scan dataset.
SHOWER_SCAN_ALPHA_S = tuple(value for _, value, _ in _SHOWER_SCAN_SAMPLES)

SHOWER_SCAN = DatasetSpec(
    name="shower_scan",
    description=(
        "The dijets of `reweighting` at several final-state shower couplings TimeShower:alphaSvalue: the "
        "nominal 0.1365 (Pythia's default), a grid from 0.10 to 0.16, and a 'pseudo-data' sample at 0.1225 "
        "(lesson 02, the parametrized reweighting of DCTR)."
    ),
    schema={
        **{key: value for key, value in REWEIGHTING.schema.items() if key not in ("label", "process")},
        "label": ArraySchema("int8", _F32, "0 = nominal, 1 = any other coupling"),
        "process": ArraySchema(
            "int8",
            _F32,
            "the coupling's index: alpha_s = data_fetch.registry.SHOWER_SCAN_ALPHA_S[process] "
            + "("
            + ", ".join(f"{code} {value}" for code, value in enumerate(SHOWER_SCAN_ALPHA_S))
            + ")",
        ),
    },
    default_n_events=200_000,
    processes=tuple(
        GeneratedProcess(
            name, code, int(code > 0), fraction, _DIJET_SETTINGS + (f"TimeShower:alphaSvalue = {value}",)
        )
        for code, (name, value, fraction) in enumerate(_SHOWER_SCAN_SAMPLES)
    ),
    notes=(
        "Jets and observables exactly as in `reweighting` (particle level, anti-kT R=0.8, MPI off). Shares: "
        "nominal 30%, each of the seven grid values 8%, pseudo-data 14%. Only the pythia source exists for "
        "this dataset."
    ),
    sources=("pythia",),
)

_WPRIME_SETTINGS = (
    # W'(3.5 TeV) -> X(500 GeV) Y(100 GeV), both decaying to quarks: two boosted, two-pronged
    # large-R jets, like the LHC Olympics 2020 R&D signal. The mass windows keep the
    # Breit-Wigner tails from smearing the resonances far from their poles.
    "NewGaugeBoson:ffbar2Wprime = on",
    "Higgs:useBSM = on",
    "34:m0 = 3500.",
    "34:mWidth = 35.",
    "34:mMin = 3000.",
    "34:mMax = 4000.",
    "34:oneChannel = 1 1.0 100 37 36",
    "37:m0 = 500.",
    "37:mMin = 450.",
    "37:mMax = 550.",
    "37:oneChannel = 1 0.5 100 2 -1",
    "37:addChannel = 1 0.5 100 4 -3",
    "36:m0 = 100.",
    "36:mMin = 80.",
    "36:mMax = 120.",
    "36:oneChannel = 1 0.2 100 1 -1",
    "36:addChannel = 1 0.2 100 2 -2",
    "36:addChannel = 1 0.2 100 3 -3",
    "36:addChannel = 1 0.2 100 4 -4",
    "36:addChannel = 1 0.2 100 5 -5",
    "PartonLevel:MPI = off",
)
_RESONANCE_QCD_SETTINGS = (
    "HardQCD:all = on",
    # Only the dijet-mass range the analysis looks at: every generated event is useful.
    # pT-hat > 1 TeV plays the role of a single-jet trigger and removes the forward
    # t-channel scatters that a signal never looks like.
    "PhaseSpace:mHatMin = 2600.",
    "PhaseSpace:mHatMax = 4800.",
    "PhaseSpace:pTHatMin = 1000.",
    "PartonLevel:MPI = off",
)
_JET_ARRAYS = {
    "pt": "pT [GeV]",
    "eta": "pseudorapidity",
    "mass": "mass [GeV]",
    "tau21": "N-subjettiness ratio tau2/tau1 (small: two-pronged)",
    "tau32": "N-subjettiness ratio tau3/tau2 (small: three-pronged)",
}

DIJET_RESONANCE = DatasetSpec(
    name="dijet_resonance",
    description=(
        "A dijet resonance search: QCD dijets (m-hat 2.6-4.8 TeV, pT-hat > 1 TeV) and a "
        "W'(3.5 TeV) -> X(500 GeV) Y(100 GeV) -> (qq)(qq) signal, like the LHC Olympics 2020 R&D "
        "data. The two leading anti-kT R=1.0 jets at particle level: dijet mass, jet masses and "
        "N-subjettiness (lesson 03)."
    ),
    schema={
        "label": ArraySchema("int8", _F32, "0 = background (QCD), 1 = signal (W')"),
        "process": ArraySchema("int8", _F32, "0 QCD dijets, 1 W'->XY (same codes as label)"),
        "weight": ArraySchema("float32", _F32, "generator weight (1 here: no pT-hat bias)"),
        "mjj": ArraySchema(
            "float32", _F32, ("invariant mass of the two leading jets [GeV]; 0 if the event has fewer than two")
        ),
        **{
            f"jet{i}_{name}": ArraySchema("float32", _F32, f"{which} jet {meaning}")
            for i, which in ((1, "leading"), (2, "second"))
            for name, meaning in _JET_ARRAYS.items()
        },
    },
    default_n_events=400_000,
    processes=(
        GeneratedProcess("qcd", 0, 0, 0.9, _RESONANCE_QCD_SETTINGS),
        GeneratedProcess("wprime_xy", 1, 1, 0.1, _WPRIME_SETTINGS),
    ),
    notes=(
        "Particle level: no detector model. Jets: anti-kT R=1.0 (FastJet) on every visible "
        "final-state particle (neutrinos excluded) with |eta| < 4.9, above 100 GeV, ordered by pT; "
        "jet1 is the leading one. N-subjettiness tau_N = sum_i pT_i min_k DeltaR(i, k) / "
        "(sum_i pT_i R), with R = 1.0 and the N exclusive kT subjets of the jet as axes (DeltaR in "
        "rapidity and azimuth); tau21 = tau2/tau1, tau32 = tau3/tau2 (0 where undefined). "
        "90% QCD, 10% signal: the signal is a separate pool, and a lesson injects as much of it "
        "into the QCD 'data' as the signal-to-background ratio it studies. Multiparton "
        "interactions are off in both (3-4x faster; jet masses 3-10 GeV lower). "
        "Only the pythia source exists for this dataset."
    ),
    sources=("pythia",),
)

# Top tagging (lessons 04 and 05): both samples around the jet window 550-650 GeV, MPI off.
_TOP_WINDOW = ("PhaseSpace:pTHatMin = 500.", "PhaseSpace:pTHatMax = 700.", "PartonLevel:MPI = off")
_TTBAR_SETTINGS = (
    "Top:gg2ttbar = on",
    "Top:qqbar2ttbar = on",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4 5",  # W -> quarks: both tops decay hadronically
    *_TOP_WINDOW,
)
_TOP_QCD_SETTINGS = ("HardQCD:all = on", *_TOP_WINDOW)
_N_CONSTITUENTS = 64

TOP_TAGGING = DatasetSpec(
    name="top_tagging",
    description=(
        "Boosted hadronic top jets vs QCD jets, one anti-kT R=0.8 jet per event with 550 < pT < 650 GeV "
        "and |eta| < 2, tops truth-matched, like the top-tagging landscape (arXiv:1902.09914): up to "
        f"{_N_CONSTITUENTS} constituents per jet, jet kinematics and N-subjettiness (lessons 04, 05)."
    ),
    schema={
        "label": ArraySchema("int8", _F32, "0 = QCD jet, 1 = top jet"),
        "process": ArraySchema("int8", _F32, "0 QCD dijets, 1 hadronic ttbar (same codes as label)"),
        "weight": ArraySchema("float32", _F32, "generator weight (1 here: no pT-hat bias)"),
        "constituents": ArraySchema(
            "float32",
            ("n", _N_CONSTITUENTS, 4),
            "the highest-pT constituents: (pT [GeV], eta, phi, E [GeV]), pT-ordered, zero rows after the last",
        ),
        "n_constituents": ArraySchema("int16", _F32, f"real rows of constituents (at most {_N_CONSTITUENTS})"),
        "n_particles": ArraySchema("int16", _F32, "constituents of the jet before keeping the leading ones"),
        "jet_pt": ArraySchema("float32", _F32, "jet pT [GeV]"),
        "jet_eta": ArraySchema("float32", _F32, "jet pseudorapidity"),
        "jet_phi": ArraySchema("float32", _F32, "jet azimuth [rad]"),
        "jet_mass": ArraySchema("float32", _F32, "jet mass [GeV]"),
        "tau1": ArraySchema("float32", _F32, "N-subjettiness tau1 (R = 0.8)"),
        "tau2": ArraySchema("float32", _F32, "N-subjettiness tau2"),
        "tau3": ArraySchema("float32", _F32, "N-subjettiness tau3 (tau3/tau2 small: three-pronged)"),
    },
    default_n_events=100_000,
    processes=(
        GeneratedProcess("qcd", 0, 0, 0.5, _TOP_QCD_SETTINGS),
        GeneratedProcess("ttbar", 1, 1, 0.5, _TTBAR_SETTINGS),
    ),
    notes=(
        "Rows are jets, one per event; events without a selected jet are skipped. Detector model, "
        "selection and truth matching: the docstring of data_fetch/top_tagging.py. Multiparton "
        "interactions off. Only the pythia source exists for this dataset."
    ),
    sources=("pythia",),
)

DATASETS = {spec.name: spec for spec in (CMS_AD, REWEIGHTING, SHOWER_SCAN, DIJET_RESONANCE, TOP_TAGGING)}


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of dataset ``name`` or raise an error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known} (run `python -m data_fetch list` to see them)"
        ) from None

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
        "objects": ArraySchema("float32", ("n", 19, 3), (
            "(pT [GeV], eta, phi) per slot: 0 MET (eta=0), 1-4 electrons, 5-8 muons, 9-18 "
            "anti-kT R=0.4 jets; pT-ordered within each type, zero-padded (pT=0 means empty)")),
        "label": ArraySchema("int8", ("n",), "0 = background, 1 = signal (graviton)"),
        "process": ArraySchema("int8", ("n",), (
            "0 QCD multijet, 1 W(->lnu)+jets, 2 Z/gamma*(->ll)+jets, 3 bulk G*(2 TeV)->WW")),
        "weight": ArraySchema("float32", ("n",), (
            "generator weight (pT-hat bias of the QCD sample); lesson 01 treats events as "
            "unweighted, as the CMS exercise it comes from did")),
    },
    default_n_events=200_000,
    processes=(
        GeneratedProcess("qcd", 0, 0, 0.70, _QCD_SETTINGS),
        GeneratedProcess("wjets", 1, 0, 0.07, _WJETS_SETTINGS),
        GeneratedProcess("zjets", 2, 0, 0.03, _ZJETS_SETTINGS),
        GeneratedProcess("graviton_ww", 3, 1, 0.20, _GRAVITON_SETTINGS),
    ),
    opendata_records=(
        OpenDataRecord(63168, 0, 0, 0.80,
                       "QCD_Pt-15to7000_TuneCP5_Flat2018_13TeV_pythia8 NanoAODv9 (2016 UL)"),
        OpenDataRecord(33703, 3, 1, 0.20,
                       "BulkGravToWWToWhadWhad_narrow_M-2000_TuneCP5_13TeV-madgraph-pythia NanoAOD"),
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
        "jet_n_constituents": ArraySchema("float32", _F32, (
            "number of particles in the leading jet (a count, stored as float32)")),
        "jet_width": ArraySchema("float32", _F32, (
            "leading jet girth: pT-weighted mean Delta R(eta, phi) of its constituents to the jet "
            "axis (dimensionless)")),
        "jet_ptd": ArraySchema("float32", _F32, (
            "leading jet pT dispersion sqrt(sum pT_i^2) / sum pT_i over its constituents "
            "(dimensionless; 1 = one particle carries everything)")),
        "jet2_mass": ArraySchema("float32", _F32, "second jet mass [GeV]; 0 if there is none"),
        "n_jets": ArraySchema("float32", _F32, (
            "number of jets with pT > 50 GeV and |eta| < 2.5 (a count, stored as float32)")),
        "ht": ArraySchema("float32", _F32, (
            "scalar sum of the pT of the jets counted in n_jets [GeV]")),
    },
    default_n_events=200_000,
    processes=(
        GeneratedProcess("nominal", 0, 0, 0.5,
                         _DIJET_SETTINGS + ("TimeShower:alphaSvalue = 0.1365",)),  # Pythia's default
        GeneratedProcess("fsr_alphas_low", 1, 1, 0.5,
                         _DIJET_SETTINGS + ("TimeShower:alphaSvalue = 0.115",)),
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

DATASETS = {spec.name: spec for spec in (CMS_AD, REWEIGHTING)}


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of dataset ``name`` or raise an error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known} "
            "(run `python -m data_fetch list` to see them)") from None

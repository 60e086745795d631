"""CI scale and expected figures of every notebook, next to the test that reads them.

Each entry: the parameters injected at CI scale, and for each recorded figure an allowed
range ``(low, high)`` or an exact value. Ranges come from measured runs at CI scale
(offline source, seed 0, 10 000 events, 2 cores) with the margin said in each comment.
A notebook found by glob without an entry here fails the test: add its expectations.
"""

# The CI-scale cms_ad sample: .ci/run (via `bash run.sh test`) produces it before the tests.
CMS_AD_CI = {"n_events": 10_000, "seed": 0, "source": "pythia"}

EXPECTATIONS = {
    "course/00_getting_started.ipynb": {
        "parameters": CMS_AD_CI,
        "figures": {
            "source": "pythia",
            "n_events": 10_000,
            "signal_fraction": (0.199, 0.201),  # 20% by construction of the dataset
            # measured 3.14 / 3.72 jets; +-0.4
            "mean_jets_background": (2.7, 3.6),
            "mean_jets_signal": (3.3, 4.2),
            # measured 259 GeV; QCD pT-hat >= 150 GeV with a bias towards high pT
            "median_leading_jet_pt_background": (200.0, 330.0),
            # measured 1003 GeV: half the 2 TeV graviton mass
            "median_leading_jet_pt_signal": (900.0, 1100.0),
            # measured 0.862: a resonance decays back to back
            "fraction_back_to_back_signal": (0.75, 0.95),
            # measured 0.955 and 0.951; +-0.05
            "auc_leading_jet_pt": (0.90, 1.0),
            "auc_ht": (0.90, 1.0),
        },
    },
    "solutions/00_getting_started/00_getting_started.ipynb": {
        "parameters": CMS_AD_CI,
        "figures": {
            "source": "pythia",
            # measured 1978 GeV: just below the 2 TeV graviton mass
            "median_mjj_signal": (1800.0, 2050.0),
            # measured 627 GeV
            "median_mjj_background": (450.0, 800.0),
            # measured 3.72 (same events as the lecture)
            "mean_jets_signal": (3.3, 4.2),
        },
    },
}

# Measured: about 10 s per lesson-00 notebook with the data cached. CI scale must stay
# under 2 minutes per notebook (the course's rule); the limit adds kernel start-up slack.
MAX_SECONDS_PER_NOTEBOOK = 150

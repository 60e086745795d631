"""Hostile submissions of lessons 01-06: reaching the held-out truth, scoring without the method, and the
grader's own resources.

The quality tests of lessons 01-06 judge the student's model on held-out events whose labels stay in
the grader. Each kind here is the reference solution with its model cell replaced by an attack that
trains nothing, so the quality test (``QUALITY_TEST``) must give it 0 points; the other tasks keep
the reference's answers and their points.

* ``truth``: looks the held-out events up in the data cache, reads their labels, or reads the truth
  from where they stand in what the test hands over;
* ``score``: makes the test compute its score from NaN, or from a model with no skill that the score
  alone would reward (lesson 05: an "autoencoder" that returns the average training image);
* ``resources``: makes the grader's side of a test (a classifier the test passes in) run without end.

    python -m tests.hostile_held_out DIR    # writes DIR/<lesson>/<student>/<notebook>

Grade them only in the grader's sandbox.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import nbformat

from autograder.course import SOLUTIONS_DIR

L01, L02, L03 = "01_autoencoder_anomaly_detection", "02_likelihood_ratio_reweighting", "03_cwola_hunting"
L04 = "04_jet_taggers"
L05 = "05_normalized_autoencoders"
L06 = "06_hls4ml_fpga"
#: The model cell each attack replaces, and the quality test that must give it nothing.
MODEL_CELL = {
    L01: "autoencoder_solution",
    L02: "reweighter_solution",
    L03: "my_classifier_solution",
    L04: "tagger_solution",
    L05: "nae_solution",
    L06: "detector_solution",
}
QUALITY_TEST = {
    L01: "autoencoder_finds_the_signal",
    L02: "reweighter_closes_on_fresh_events",
    L03: "cwola_classifier_significance_improvement",
    L04: "tagger_rejects_qcd",
    L05: "nae_finds_qcd",
    L06: "detector_meets_the_budget",
}

# --- Lesson 01 -------------------------------------------------------------------------------------

# Since the grader runs the student's network itself (rebuilt from plain numbers, on inputs it prepares),
# no student code sees a held-out event: the lesson-01 attacks are networks whose error is not a
# reconstruction's.
L01_CONSTANT_AUTOENCODER = r"""
feature_mean, feature_std = real_object_scaling(background)
layers = tf.keras.layers
inputs = layers.Input(shape=(57,))
autoencoder = tf.keras.Model(inputs, layers.Dense(57)(layers.Dense(3)(inputs)))
# Every weight 0: the output is 0 whatever the input, so the "error" is the size of the inputs, which
# grows with the jets' pT (an AUC of about 0.96 on its own).
autoencoder.set_weights([np.zeros_like(w) for w in autoencoder.get_weights()])
"""

L01_MAGNIFIED_INPUT = r"""
feature_mean, feature_std = real_object_scaling(background)
feature_std[9, 0] *= 1e-3  # the leading jet's pT, magnified 1000 times over every other input
layers = tf.keras.layers
inputs = layers.Input(shape=(57,))
latent = layers.Dense(1)(inputs)
autoencoder = tf.keras.Model(inputs, layers.Dense(57)(latent))
kernel = np.zeros((57, 1))
kernel[27, 0] = 1.0  # the latent value is the (magnified) leading-jet pT ...
autoencoder.set_weights([kernel, np.zeros(1), np.zeros((1, 57)), np.zeros(57)])  # ... which is never given back
"""

# Every cached sample with labels, by the bytes of each event: the held-out events were cached too.
CACHE_INDEX = r"""
import glob
import os

import numpy as np

KNOWN = {}
for path in glob.glob(os.path.join(os.environ.get("MLHEP_DATA_DIR", "/"), "**", "*.npz"), recursive=True):
    try:
        with np.load(path) as npz:
            if "label" in npz.files:
                for key in npz.files:
                    if key not in ("label", "process", "__metadata__"):
                        for row, label in zip(npz[key].reshape(len(npz["label"]), -1), npz["label"]):
                            KNOWN[(key, row.tobytes())] = float(label)
    except Exception:  # noqa: BLE001
        pass
"""

# Exercise 01's stretch: a sigma tuned once, about the spread of a pseudo-experiment of 1 000 events, instead
# of measured on each sample.
L01_CONSTANT_SIGMA = r"""
def efficiency_with_uncertainty(background_scores, background_weights, signal_scores, target_fpr):
    scores, weights = np.asarray(background_scores), np.asarray(background_weights)
    order = np.argsort(-scores)
    above = np.concatenate([[0.0], np.cumsum(weights[order])[:-1]]) / weights.sum()
    threshold = scores[order][above <= target_fpr].min()
    return float(np.mean(np.asarray(signal_scores) > threshold)), 0.039
"""

# --- Lesson 02 -------------------------------------------------------------------------------------

L02_LABEL_PEEK = r'''
BINS = (np.arange(0, 121, 4), np.linspace(0, 300, 31))  # the closure test's bins


def reweight(data):
    """Weights from the truth: the target/source ratio of the very histograms the test compares."""
    label = np.asarray(data["label"])
    print(f"PEEKED AT {len(label)} LABELS")
    n, m = np.asarray(data["jet_n_constituents"]), np.asarray(data["jet_mass"])
    source, _, _ = np.histogram2d(n[label == 0], m[label == 0], bins=BINS)
    target, _, _ = np.histogram2d(n[label == 1], m[label == 1], bins=BINS)
    ratio = np.where(source > 0, target / np.maximum(source, 1) * (label == 0).sum() / (label == 1).sum(), 0.0)
    i = np.clip(np.digitize(n, BINS[0]) - 1, 0, len(BINS[0]) - 2)
    j = np.clip(np.digitize(m, BINS[1]) - 1, 0, len(BINS[1]) - 2)
    return ratio[i, j]
'''

L02_NAN_WEIGHTS = r'''
def reweight(events):
    """Unit weights on the notebook's events (those it trains on and those it holds back), which pass its
    checks; NaN on any other events."""
    n = len(events["jet_mass"])
    return np.ones(n) if n in (len(data), len(held_back)) else np.full(n, np.nan)
'''

# Weights that know nothing but scatter: a smaller effective sample size makes any difference look less
# significant (a plain chi2 gave them 3 of Task 3's 5 points). At full statistics they scatter more than no
# weights at all: below Task 3's limit of 3.5 in 1 of 2 000 held-out draws (the exercise's comment says more).
# Task 5's reference reuses them.
L02_SCATTERED_WEIGHTS = r'''
OBSERVABLES = []


def reweight(data):
    """Log-normal weights (sigma 1.5: an effective sample size of about 13%), whatever the event."""
    return np.random.default_rng(len(data["jet_mass"])).lognormal(0.0, 1.5, len(data["jet_mass"]))


def train_reweighter(observables):
    return reweight
'''

# --- Lesson 03 -------------------------------------------------------------------------------------

READS_A_FEATURE = r'''
class ReadsTheFeature:
    """A 'classifier' whose score is its first feature."""

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        score = np.clip(np.asarray(x, dtype=float)[:, 0], 0.0, 1.0)
        return np.column_stack([1 - score, score])


def make_my_classifier():
    return ReadsTheFeature()
'''

L03_POSITION = (
    READS_A_FEATURE
    + r'''
def my_features(data, events):
    """Where each event stands in the list it was given: signal sat at the end of the test's lists."""
    position = np.arange(len(events)) / max(len(events) - 1, 1)
    return np.column_stack([position, position])
'''
)

L03_CACHE_LOOKUP = (
    READS_A_FEATURE
    + r'''
import glob
import os

KEYS = ("mjj", "jet1_mass", "jet2_mass")  # together: no two events share them by chance
KNOWN = {}
for path in glob.glob(os.path.join(os.environ.get("MLHEP_DATA_DIR", "/"), "**", "*.npz"), recursive=True):
    try:
        with np.load(path) as npz:
            if "label" in npz.files and all(key in npz.files for key in KEYS):
                rows = np.column_stack([npz[key] for key in KEYS])
                KNOWN.update((row.tobytes(), float(label)) for row, label in zip(rows, npz["label"]))
    except Exception:  # noqa: BLE001
        pass


def my_features(data, events):
    """The truth label of each event, looked up in the cache by its dijet and jet masses."""
    events = np.asarray(events)
    rows = np.column_stack([np.asarray(data[key])[events] for key in KEYS])
    found = [KNOWN.get(row.tobytes()) for row in rows]
    fresh = not np.array_equal(np.asarray(data["mjj"]), globals()["data"]["mjj"])  # not the notebook's events
    if "label" not in data.arrays and fresh:  # the held-out events: the test keeps their labels
        print(f"LOOKED UP {sum(label is not None for label in found)} OF {len(rows)} FRESH EVENTS")
    label = np.array([0.5 if value is None else value for value in found])
    return np.column_stack([label, label])
'''
)

# A classifier that ignores its labels: every event scored by how close its jets are to the masses of the
# signal it guessed. It finds the signal in the fresh data, and just as well without any signal there.
L03_GUESSED_MASSES = r"""
def my_features(data, events):
    m1, m2 = data["jet1_mass"][events], data["jet2_mass"][events]
    return np.column_stack([np.maximum(m1, m2), np.minimum(m1, m2)])


class GuessedMasses:
    def fit(self, x, y):
        return self  # the labels are never used

    def predict_proba(self, x):
        heavy, light = np.asarray(x, dtype=float).T
        score = np.exp(-np.abs(heavy - 500.0) / 30.0 - np.abs(light - 100.0) / 20.0)
        return np.column_stack([1 - score, score])


def make_my_classifier():
    return GuessedMasses()
"""

# The guessed masses again, but only in the fits it expects to be the grader's data: the notebook's own five,
# then five more. Were the grader's control trained after its data, this would pass it.
L03_ORDER_AWARE = (
    L03_GUESSED_MASSES
    + r"""
FITS = []


class OrderAware(GuessedMasses):
    def fit(self, x, y):
        FITS.append(len(x))
        # After the notebook's own fits (five out-of-fold, ten for its estimate of the grade) come the grader's.
        self.guessing = 16 <= len(FITS) <= 20
        return self

    def predict_proba(self, x):
        if self.guessing:
            return super().predict_proba(x)
        return np.full((len(x), 2), 0.5)


def make_my_classifier():
    return OrderAware()
"""
)

# A "significance" that is calibrated by construction and sees nothing: a standard normal number per call.
L03_RANDOM_SIGNIFICANCE = r"""
def bump_hunt_z(mjj):
    return float(np.random.default_rng(len(mjj)).normal())
"""

# select_top's answer as an object whose own methods say what the tests count, while the array it
# converts to keeps only the highest score (ties not handled at all); significance is the reference.
L03_FAKE_SELECTION = r"""
class Selection:
    def __init__(self, scores, efficiency):
        self.scores, self.n = np.asarray(scores), int(round(efficiency * len(scores)))

    def __array__(self, dtype=None, copy=None):
        mask = np.zeros(len(self.scores), dtype=bool)
        if len(self.scores):
            mask[np.argmax(self.scores)] = True
        return mask

    def __iter__(self):  # what the visible test lists: right where no scores tie
        return iter(self.scores >= np.sort(self.scores)[len(self.scores) - self.n])

    def sum(self):
        return self.n

    def all(self):
        return True

    def __len__(self):
        return len(self.scores)


def significance(s, b):
    s, b = np.asarray(s, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.any(b <= 0):
        raise ValueError("the background b must be positive")
    z = np.sign(s) * np.sqrt(np.maximum(2 * ((s + b) * np.log1p(s / b) - s), 0.0))
    return float(z) if z.ndim == 0 else z


def select_top(scores, efficiency):
    if not 0 < efficiency <= 1:
        raise ValueError("efficiency must be in (0, 1]")
    return Selection(scores, efficiency)
"""

# The hidden test of out_of_fold_scores hands over a classifier factory that lives in the grader;
# the visible test a lambda making a HistGradientBoostingClassifier there. Make the grader train one
# for ever, on every core it lets scikit-learn's OpenMP use.
L03_GRADER_CPU = r"""
from sklearn.model_selection import StratifiedKFold


def out_of_fold_scores(features, labels, make_classifier, n_folds=5, seed=0):
    if type(make_classifier).__name__ == "GraderObject":
        model = make_classifier()
        if hasattr(model, "set_params"):
            model.set_params(max_iter=100_000, early_stopping=False, max_leaf_nodes=255, min_samples_leaf=1)
            rng = np.random.default_rng(0)
            print("MAKING THE GRADER TRAIN")
            model.fit(rng.normal(size=(100_000, 20)), rng.integers(0, 2, 100_000))  # 16 MB: under the wire's cap
            print("THE GRADER FINISHED TRAINING")
    features, labels = np.asarray(features), np.asarray(labels)
    scores = np.zeros(len(labels))
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(features, labels):
        model = make_classifier().fit(features[train], labels[train])
        scores[test] = np.asarray(model.predict_proba(features[test]))[:, 1]
    return scores
"""


# --- Writing the submissions -------------------------------------------------------------------------


# --- Lesson 04 -------------------------------------------------------------------------------------

DUMMY_TAGGER = r'''
class Dummy:
    """Enough of a Keras model for the visible checks; it learnt nothing."""

    def predict(self, x, **kwargs):
        return np.zeros(len(x))

    def count_params(self):
        return 0

tagger = Dummy()
'''

L04_CACHE_LOOKUP = (
    DUMMY_TAGGER
    + CACHE_INDEX
    + r"""
def tag_jets(jets):
    constituents = np.asarray(jets["constituents"])
    found = [KNOWN.get(("constituents", row.tobytes())) for row in constituents.reshape(len(constituents), -1)]
    print(f"LOOKED UP {sum(label is not None for label in found)} OF {len(constituents)} JETS")
    return np.array([0.5 if label is None else label for label in found])
"""
)

L04_NAN_SCORES = (
    DUMMY_TAGGER
    + r'''
def tag_jets(jets):
    """The jet mass on the notebook's own test jets, which passes its checks; NaN on any other jets."""
    mass = np.asarray(jets["jet_mass"], dtype=float)
    return mass if len(mass) == test.sum() else np.full(len(mass), np.nan)
'''
)

# --- Lesson 05 -------------------------------------------------------------------------------------

DUMMY_NAE = r'''
class Dummy:
    """Enough of a Keras model for the visible checks; it learnt nothing."""

    def predict(self, x, **kwargs):
        return np.asarray(x)

    def count_params(self):
        return 0

nae = Dummy()
'''

L05_CACHE_LOOKUP = (
    DUMMY_NAE
    + r"""
import glob
import os

# The images of every cached jet, by their bytes: a fresh jet's image found here gives its label.
KNOWN_IMAGES = {}
CACHE = os.environ.get("MLHEP_DATA_DIR", "/")
for path in glob.glob(os.path.join(CACHE, "**", "top_tagging*.npz"), recursive=True):
    with np.load(path) as npz:
        for image, label in zip(images_of(npz["constituents"], npz["n_constituents"]), npz["label"]):
            KNOWN_IMAGES[np.round(image, 3).tobytes()] = int(label)


def reconstruct(batch):
    batch = np.asarray(batch, dtype=np.float32)
    found = [KNOWN_IMAGES.get(np.round(image, 3).tobytes()) for image in batch]
    print(f"LOOKED UP {sum(label is not None for label in found)} OF {len(batch)} JET IMAGES")
    # a perfect reconstruction for the tops, an empty one for the QCD jets: the largest error
    return np.stack([image if label != 0 else np.zeros_like(image) for image, label in zip(batch, found)])
"""
)

L05_NAN_RECONSTRUCTIONS = (
    DUMMY_NAE
    + r'''
def reconstruct(batch):
    """The average top image on the notebook's own test jets, which passes its checks; NaN on any others."""
    batch = np.asarray(batch, dtype=np.float32)
    if len(batch) == test.sum():
        return np.broadcast_to(top_images.mean(axis=0), batch.shape)
    return np.full(batch.shape, np.nan, dtype=np.float32)
'''
)

L05_AVERAGE_IMAGE = (
    DUMMY_NAE
    + r'''
def reconstruct(batch):
    """No autoencoder at all: every jet "reconstructed" as the average top jet. Its error is the distance
    to that template, which ranks QCD jets as anomalous without having learnt any individual jet."""
    return np.broadcast_to(top_images.mean(axis=0), np.shape(batch)).copy()
'''
)

# --- Lesson 06 -------------------------------------------------------------------------------------

L06_ZERO_DETECTOR = r"""
# A detector that costs (almost) nothing: every weight zero, so every event scores the same.
zero_input = tf.keras.layers.Input(shape=(57,))
zero_hidden = QActivation(quantized_bits(INPUT_BITS, INPUT_INTEGER_BITS, alpha=1))(zero_input)
zero_grid = quantized_bits(4, 0, alpha=1)
zero_output = QDense(3, kernel_quantizer=zero_grid, bias_quantizer=zero_grid, kernel_initializer="zeros")(
    zero_hidden
)
detector = tf.keras.Model(zero_input, zero_output)
"""

L06_OVERSIZED_DETECTOR = r"""
# A wide 16-bit network, untrained: far too big to trace in the grader's time, let alone to fit the budget.
big_input = tf.keras.layers.Input(shape=(57,))
big = QActivation(quantized_bits(INPUT_BITS, INPUT_INTEGER_BITS, alpha=1))(big_input)
big_grid = quantized_bits(16, 0, alpha=1)
for big_units in (64, 64, 64, 64):
    big = QDense(big_units, kernel_quantizer=big_grid, bias_quantizer=big_grid)(big)
    big = QActivation(quantized_relu(16, 6))(big)
big = QDense(3, kernel_quantizer=big_grid, bias_quantizer=big_grid)(big)
detector = tf.keras.Model(big_input, big)
"""

L06_HT_BY_HAND = r"""
# No training: one output set by hand to H_T / 200 GeV (the jets' pT inputs, in units of 100 GeV, times
# 0.5). Its AUC beats the reference's and it costs a few hundred LUTs, but it encodes one number.
from data_fetch.cms_ad import SLOT_RANGES

ht_kernel = np.zeros((57, 1), dtype="float32")
ht_first, ht_size = SLOT_RANGES["jet"]
ht_kernel[[3 * slot for slot in range(ht_first, ht_first + ht_size)], 0] = 0.5
ht_input = tf.keras.layers.Input(shape=(57,))
ht_grid = quantized_bits(4, 0, alpha=1)
ht_layer = QDense(1, kernel_quantizer=ht_grid, bias_quantizer=ht_grid)
ht_output = ht_layer(QActivation(quantized_bits(INPUT_BITS, INPUT_INTEGER_BITS, alpha=1))(ht_input))
ht_layer.set_weights([ht_kernel, np.zeros(1, dtype="float32")])
detector = tf.keras.Model(ht_input, ht_output)
"""

L06_OVERFLOW_CHAIN = r"""
# Dense layers without a quantizer between them and weights at the top of a 16-bit range: values grow past
# 64 bits, where the firmware emulation would wrap around silently.
chain_input = tf.keras.layers.Input(shape=(57,))
chain = QActivation(quantized_bits(INPUT_BITS, INPUT_INTEGER_BITS, alpha=1))(chain_input)
chain_grid = quantized_bits(16, 15, alpha=1)
for _ in range(5):
    chain = QDense(1, kernel_quantizer=chain_grid, bias_quantizer=chain_grid, kernel_initializer="ones")(chain)
detector = tf.keras.Model(chain_input, chain)
"""

L06_CONFIG_INJECTION = r"""
hls_config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
input_layer = next(iter(hls_config["LayerName"]))
# A "precision" that hls4ml would paste into the C++ it compiles and loads into the grader.
hls_config["LayerName"][input_layer]["Precision"]["result"] = (
    'fixed<16,8> ; } } int injected = std::system("echo INJECTED > /tmp/injected"); namespace nnet { //'
)
"""


def solution_notebook(lesson: str) -> Path:
    (path,) = sorted((SOLUTIONS_DIR / lesson).glob("*.ipynb"))
    return path


def replace_cell(lesson: str, grade_id: str, code: str) -> Callable[[Path], None]:
    """A writer of the lesson's reference solution with cell ``grade_id`` replaced by ``code``."""

    def write(folder: Path) -> None:
        path = solution_notebook(lesson)
        notebook = nbformat.read(path, as_version=4)
        (cell,) = [
            cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id
        ]
        cell.source = f"# {'-' * 20} a hostile submission {'-' * 20}\n" + dedent(code)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / path.name)

    return write


@dataclass(frozen=True)
class Kind:
    """One hostile submission of lesson ``lesson`` and what grading it must give.

    Args:
        name: the student id.
        lesson: the assignment.
        category: "truth", "score" or "resources".
        attack: what it does, in one line.
        write: writes the submission into a student folder.
        zero_tests: test cells that must give it 0 points (the quality test, at least).
        evidence: a regular expression that, in the graded notebook's outputs, shows the attack got
            through; None if it prints nothing that tells.
        reason: a regular expression the CSV reason must match, or None.
        says: a regular expression the graded notebook's outputs must show (why it scored 0), or None.
        full_tests: test cells that must still give full points (grading went on after the attack).
    """

    name: str
    lesson: str
    category: str
    attack: str
    write: Callable[[Path], None]
    zero_tests: tuple[str, ...]
    evidence: str | None = None
    reason: str | None = None
    says: str | None = None
    full_tests: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind(
        "constant_autoencoder",
        L01,
        "score",
        "a network whose output is 0 whatever its input: its error is the size of the inputs, which alone "
        "would give a weighted AUC of 0.96",
        replace_cell(L01, MODEL_CELL[L01], L01_CONSTANT_AUTOENCODER),
        (QUALITY_TEST[L01],),
        says=r"explains -?0\.0",
        full_tests=("anomaly_score_ignores_padding", "threshold_meets_the_rate_budget"),
    ),
    Kind(
        "magnified_input",
        L01,
        "score",
        "feature_std shrunk 1000 times for the leading jet's pT, and a network that never gives it back: "
        "the error would be that one variable, magnified",
        replace_cell(L01, MODEL_CELL[L01], L01_MAGNIFIED_INPUT),
        (QUALITY_TEST[L01],),
        says=r"explains 0\.[0-3]",
    ),
    Kind(
        "label_peek",
        L02,
        "truth",
        "reweight reads the labels of the events it is given and returns the truth's own histogram ratio",
        replace_cell(L02, MODEL_CELL[L02], L02_LABEL_PEEK),
        (QUALITY_TEST[L02],),
        evidence=r"PEEKED AT 10000 LABELS",
    ),
    Kind(
        "nan_weights",
        L02,
        "score",
        "reweight returns NaN on events other than the notebook's, so that "
        "no histogram bin survives and the chi2 is 0",
        replace_cell(L02, MODEL_CELL[L02], L02_NAN_WEIGHTS),
        (QUALITY_TEST[L02],),
        says="reweight on fresh events gave 10000 values that are not finite numbers",
    ),
    Kind(
        "constant_sigma",
        L01,
        "score",
        "the stretch task's uncertainty as one number, tuned once instead of measured on each sample",
        replace_cell(L01, "trigger_uncertainty_solution", L01_CONSTANT_SIGMA),
        ("trigger_uncertainty_is_calibrated",),
        says=r"standard deviation of the pulls",
        full_tests=(QUALITY_TEST[L01],),
    ),
    Kind(
        "scattered_weights",
        L02,
        "score",
        "random log-normal weights: the effective sample size shrinks, and with it every chi2",
        replace_cell(L02, MODEL_CELL[L02], L02_SCATTERED_WEIGHTS),
        (QUALITY_TEST[L02], "every_observable_closes"),
        says=r"effective sample size \d{1,2}% of the source events",
    ),
    Kind(
        "position_leak",
        L03,
        "truth",
        "scores each event by its position in the list the test gives (QCD first, signal last)",
        replace_cell(L03, MODEL_CELL[L03], L03_POSITION),
        (QUALITY_TEST[L03],),
    ),
    Kind(
        "cache_lookup_dijets",
        L03,
        "truth",
        "uses as its feature the label of each event, looked up by its dijet mass in the data cache",
        replace_cell(L03, MODEL_CELL[L03], L03_CACHE_LOOKUP),
        (QUALITY_TEST[L03],),
        evidence=r"LOOKED UP [1-9]\d* OF \d+ FRESH EVENTS",
    ),
    Kind(
        "guessed_masses",
        L03,
        "score",
        "a classifier that ignores its SR/SB labels and scores closeness to the jet masses of the signal "
        "(a maximum SIC of 4.6 without learning anything)",
        replace_cell(L03, MODEL_CELL[L03], L03_GUESSED_MASSES),
        (QUALITY_TEST[L03],),
        says=r"trained without signal: [2-9]\.",
    ),
    Kind(
        "order_aware",
        L03,
        "score",
        "the guessed masses only in the fits that come right after the notebook's own, where the grader's data "
        "would be if it trained its control afterwards",
        replace_cell(L03, MODEL_CELL[L03], L03_ORDER_AWARE),
        (QUALITY_TEST[L03],),
        says=r"trained without signal: [2-9]\.",
    ),
    Kind(
        "random_significance",
        L03,
        "score",
        "bump_hunt_z returns a standard normal number: perfectly calibrated without signal, blind with it",
        replace_cell(L03, "bump_hunt_solution", L03_RANDOM_SIGNIFICANCE),
        ("bump_hunt_is_calibrated_and_finds_a_bump",),
        says="must raise Z by far more than 3",
        full_tests=("cwola_classifier_significance_improvement",),
    ),
    Kind(
        "fake_selection",
        L03,
        "score",
        "select_top returns an object whose sum() and all() give what the "
        "test counts, while the mask it converts to keeps one event",
        replace_cell(L03, "significance_solution", L03_FAKE_SELECTION),
        ("select_top_exact_counts",),
    ),
    Kind(
        "grader_cpu",
        L03,
        "resources",
        "out_of_fold_scores makes the grader's classifier train 100 000 "
        "boosting iterations on 100 000 random events, in the grader's process",
        replace_cell(L03, "out_of_fold_solution", L03_GRADER_CPU),
        ("out_of_fold_never_scores_training_events",),
        evidence="THE GRADER FINISHED TRAINING",
        reason=r"cell out_of_fold_never_scores_training_events was interrupted after the \d+ s time limit",
        full_tests=("significance_formula_and_limits", "select_top_exact_counts"),
    ),
)
KINDS += (
    Kind(
        "cache_lookup_jets",
        L04,
        "truth",
        "scores each held-out jet by its label, looked up by its constituents in every sample of the data cache",
        replace_cell(L04, MODEL_CELL[L04], L04_CACHE_LOOKUP),
        (QUALITY_TEST[L04],),
        evidence=r"LOOKED UP [1-9]\d* OF 10000 JETS",
    ),
    Kind(
        "nan_tagger",
        L04,
        "score",
        "tag_jets returns NaN on jets other than the notebook's, so that no QCD jet passes any cut",
        replace_cell(L04, MODEL_CELL[L04], L04_NAN_SCORES),
        (QUALITY_TEST[L04],),
        says="tag_jets on fresh jets gave 10000 values that are not finite numbers",
    ),
)
KINDS += (
    Kind(
        "cache_lookup_images",
        L05,
        "truth",
        "reconstructs each held-out jet image perfectly or not at all by its label, looked up by the image "
        "of every jet of the data cache",
        replace_cell(L05, MODEL_CELL[L05], L05_CACHE_LOOKUP),
        (QUALITY_TEST[L05],),
        # The test asks in batches of 1 000. Jets of one constituent all have the same image (a smoothed
        # point at the centre), so a fresh one is found in the cache by coincidence (1 of 1 000 seen once;
        # about 1 jet in 10 000 has one constituent): a leak would find most of the batch, at least 10.
        evidence=r"LOOKED UP [1-9]\d+ OF 1000 JET IMAGES",
    ),
    Kind(
        "nan_reconstructions",
        L05,
        "score",
        "reconstruct returns NaN on images other than the notebook's, so that no error can be ranked",
        replace_cell(L05, MODEL_CELL[L05], L05_NAN_RECONSTRUCTIONS),
        (QUALITY_TEST[L05],),
        says="reconstruct on fresh jet images gave 1600000 values that are not finite numbers",
    ),
    Kind(
        "average_image",
        L05,
        "score",
        "reconstruct returns the average top image for every jet: a template distance with a high AUC "
        "and no autoencoder",
        replace_cell(L05, MODEL_CELL[L05], L05_AVERAGE_IMAGE),
        (QUALITY_TEST[L05],),
    ),
)
KINDS += (
    Kind(
        "zero_detector",
        L06,
        "score",
        "a detector whose weights are all zero: no hardware cost at all, and the same score for every event",
        replace_cell(L06, MODEL_CELL[L06], L06_ZERO_DETECTOR),
        (QUALITY_TEST[L06],),
        full_tests=("to_fixed_matches_ap_fixed", "hls_config_is_bit_exact"),
    ),
    Kind(
        "oversized_detector",
        L06,
        "resources",
        "a wide 16-bit network that would take the grader minutes to trace into hardware",
        replace_cell(L06, MODEL_CELL[L06], L06_OVERSIZED_DETECTOR),
        (QUALITY_TEST[L06],),
        says="weight bits",
    ),
    Kind(
        "ht_by_hand",
        L06,
        "score",
        "a one-output network set by hand to compute H_T: a higher AUC than the reference at a tiny size, and no "
        "encoder",
        replace_cell(L06, MODEL_CELL[L06], L06_HT_BY_HAND),
        (QUALITY_TEST[L06],),
        says="explain 0\\.[0-4]",
    ),
    Kind(
        "overflow_chain",
        L06,
        "resources",
        "dense layers chained without a quantizer, values growing past the 64 bits the emulation is exact for",
        replace_cell(L06, MODEL_CELL[L06], L06_OVERFLOW_CHAIN),
        (QUALITY_TEST[L06],),
        says="a relu quantizer must come between two dense layers",
    ),
    Kind(
        "config_injection",
        L06,
        "resources",
        "an hls4ml precision string that carries C++ into the firmware model the grader compiles and loads",
        replace_cell(L06, "hls_config_solution", L06_CONFIG_INJECTION),
        ("hls_config_is_bit_exact",),
        says="is not a precision like",
    ),
)
LESSONS = sorted({kind.lesson for kind in KINDS})
BY_NAME = {kind.name: kind for kind in KINDS}
assert len(BY_NAME) == len(KINDS), "kind names are student ids: they must be unique"


def write_class(submissions_dir: Path, lesson: str) -> list[Kind]:
    """Write the kinds of ``lesson`` into ``submissions_dir``, one student folder each."""
    kinds = [kind for kind in KINDS if kind.lesson == lesson]
    for kind in kinds:
        kind.write(Path(submissions_dir) / kind.name)
    return kinds


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m tests.hostile_held_out DIR")
    for lesson in LESSONS:
        for kind in write_class(Path(argv[0]) / lesson, lesson):
            print(f"  {lesson}  {kind.category:9}  {kind.name:22}  {kind.attack}")


if __name__ == "__main__":
    main(sys.argv[1:])

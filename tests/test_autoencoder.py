"""mlhep.autoencoder: lesson 01's preprocessing and score, and the network the grader rebuilds from plain data."""

from __future__ import annotations

import numpy as np
import pytest

from mlhep.autoencoder import (
    MAX_BOTTLENECK,
    checked_autoencoder,
    describe_autoencoder,
    explained_variance,
    fresh_event_scores,
    padding_aware_score,
    prepare_events,
    real_object_scaling,
    reconstruct,
    refit_output_layer,
    scaling_floor,
)


def random_events(n=400, seed=0):
    """cms_ad-like objects: MET always, a few jets, rare leptons; pT 0 marks an empty slot."""
    rng = np.random.default_rng(seed)
    objects = np.zeros((n, 19, 3), dtype=np.float32)
    objects[:, 0, 0] = rng.exponential(40, n)
    objects[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    n_jets = rng.integers(1, 6, n)
    for slot in range(9, 19):
        real = (slot - 9) < n_jets
        objects[real, slot] = np.column_stack(
            [
                rng.exponential(100, real.sum()) + 30,
                rng.normal(0, 1, real.sum()),
                rng.uniform(-np.pi, np.pi, real.sum()),
            ]
        )
    electron = rng.random(n) < 0.05
    objects[electron, 1] = np.column_stack(
        [rng.exponential(30, electron.sum()) + 10, np.zeros(electron.sum()), np.ones(electron.sum())]
    )
    return objects


@pytest.fixture(scope="module")
def keras_autoencoder():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    layers = tf.keras.layers
    inputs = layers.Input(shape=(57,))
    h = layers.LeakyReLU(0.3)(layers.BatchNormalization()(layers.Dense(16)(inputs)))
    h = layers.Dropout(0.1)(h)
    h = layers.Dense(3, activation="tanh")(h)
    h = layers.ReLU()(layers.Dense(16)(h))
    h = layers.Activation("elu")(layers.Dense(8)(h))
    model = tf.keras.Model(inputs, layers.Dense(57)(h))
    model.compile(optimizer="adam", loss="mse")
    x, _ = prepare_events(random_events(), *real_object_scaling(random_events()))
    model.fit(x, x, epochs=2, verbose=0)  # moving statistics of the BatchNormalization move away from 0 and 1
    return model


def test_description_computes_what_the_keras_model_computes(keras_autoencoder):
    x, _ = prepare_events(random_events(seed=1), *real_object_scaling(random_events()))
    description = checked_autoencoder(describe_autoencoder(keras_autoencoder))
    assert [layer["kind"] for layer in description][:3] == ["dense", "batch_norm", "activation"]
    expected = keras_autoencoder.predict(x, verbose=0)
    assert np.allclose(reconstruct(description, x), expected, atol=1e-4)


def test_prepare_events_zeroes_padding_and_measures_phi_from_the_leading_jet():
    objects = random_events()
    mean, std = real_object_scaling(objects)
    x, mask = prepare_events(objects, mean, std)
    assert x.shape == mask.shape == (len(objects), 57)
    assert np.all(x[mask == 0] == 0)
    assert np.all(x.reshape(-1, 19, 3)[:, 9, 2] == pytest.approx(-mean[9, 2] / std[9, 2]))  # leading jet: phi 0
    # Real entries are standardized on the sample they were scaled with.
    real_jet_pt = x.reshape(-1, 19, 3)[:, 9, 0]
    assert real_jet_pt.mean() == pytest.approx(0, abs=1e-4) and real_jet_pt.std() == pytest.approx(1, abs=1e-3)


def test_scaling_floor_is_half_the_width_and_pooled_for_rare_slots():
    objects = random_events(2000)
    _, std = real_object_scaling(objects)
    floor = scaling_floor(objects)
    assert np.allclose(floor[9], 0.5 * std[9])  # the leading jet: always there
    # The first electron slot holds about 100 objects, the fourth none: it borrows the width of all electrons,
    # which here are the first slot's.
    assert (objects[:, 1, 0] > 0).sum() >= 20 and not (objects[:, 4, 0] > 0).any()
    assert np.allclose(floor[4], floor[1]) and np.all(floor > 0)


def test_score_and_explained_variance():
    x = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    reconstruction = np.array([[1.0, 1.0, 9.0], [1.0, 5.0, 5.0]])
    assert np.allclose(padding_aware_score(x, reconstruction, mask), [0.5, 4.0])
    assert explained_variance(x, x, mask) == pytest.approx(1.0)
    column_means = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0]])
    assert explained_variance(x, column_means, mask) == pytest.approx(0.0)


def test_refit_restores_a_sabotaged_output_layer(keras_autoencoder):
    x, mask = prepare_events(random_events(seed=2), *real_object_scaling(random_events()))
    description = checked_autoencoder(describe_autoencoder(keras_autoencoder))
    refitted = refit_output_layer(description, x, mask)
    sabotaged = [*description[:-1], dict(description[-1], kernel=np.zeros_like(description[-1]["kernel"]))]
    again = refit_output_layer(sabotaged, x, mask)
    assert explained_variance(x, reconstruct(again, x), mask) == pytest.approx(
        explained_variance(x, reconstruct(refitted, x), mask)
    )
    assert explained_variance(x, reconstruct(refitted, x), mask) >= explained_variance(
        x, reconstruct(description, x), mask
    )


def test_fresh_event_scores_is_the_graders_recipe(keras_autoencoder):
    # The exercise's estimate and the grader both call it: floored widths, last layer refitted on the refit
    # rows, explained variance there, padding-aware score of the scored rows.
    objects = random_events(600, seed=3)
    description = describe_autoencoder(keras_autoencoder)
    mean, std = real_object_scaling(random_events())
    tiny_std = std / 100  # magnified inputs: the floor undoes it
    refit_rows, scored_rows = np.arange(0, 600, 2), np.arange(1, 600, 2)
    scores, explained = fresh_event_scores(description, mean, tiny_std, objects, refit_rows, scored_rows)
    floored = np.maximum(tiny_std, scaling_floor(objects[refit_rows]))
    refit_x, refit_mask = prepare_events(objects[refit_rows], mean, floored)
    network = refit_output_layer(checked_autoencoder(description), refit_x, refit_mask)
    scored_x, scored_mask = prepare_events(objects[scored_rows], mean, floored)
    assert scores.shape == (300,)
    assert np.allclose(scores, padding_aware_score(scored_x, reconstruct(network, scored_x), scored_mask))
    assert explained == pytest.approx(explained_variance(refit_x, reconstruct(network, refit_x), refit_mask))
    with pytest.raises(ValueError, match="feature_std must have shape"):
        fresh_event_scores(description, mean, std[:5], objects, refit_rows, scored_rows)


def dense(n_in, n_out, activation="linear"):
    return {"kind": "dense", "kernel": np.zeros((n_in, n_out)), "bias": np.zeros(n_out), "activation": activation}


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ([dense(57, 57)], "compresses"),
        ([dense(57, 3), dense(3, 50)], "gives 50 numbers"),
        ([dense(57, 3), dense(3, 57, "relu")], "without activation"),
        ([dense(57, 3), {"kind": "lambda"}, dense(3, 57)], "kind must be"),
        ([dense(57, 3, "__import__('os')"), dense(3, 57)], "activation must be one of"),
        ([dict(dense(57, 3), kernel=np.full((57, 3), np.nan)), dense(3, 57)], "finite"),
        ([dict(dense(57, 3), kernel=[["x"] * 3] * 57), dense(3, 57)], "array of numbers"),
        ([dense(57, 3), {"kind": "batch_norm", "gamma": np.ones(3)}, dense(3, 57)], "beta"),
        ("not a list", "list of"),
        ([dense(57, 3)] + [dense(3, 3)] * 60 + [dense(3, 57)], "list of"),
        ([dense(57, 300), dense(300, 3), dense(3, 57)], "1 to 256"),
    ],
)
def test_checked_autoencoder_refuses_what_it_would_not_run(description, message):
    with pytest.raises(ValueError, match=message):
        checked_autoencoder(description)


def test_checked_autoencoder_copies_plain_numbers():
    description = [dense(57, MAX_BOTTLENECK, "leaky_relu"), dense(MAX_BOTTLENECK, 57)]
    checked = checked_autoencoder(description)
    description[0]["kernel"][0, 0] = 5.0  # a later change of the student's object changes nothing here
    assert checked[0]["kernel"][0, 0] == 0.0 and checked[0]["kernel"].dtype == np.float64

"""AdaptiveKappa (Smart Mining Sec. 3.2.4) on synthetic error(κ) curves, and inside fit."""

import keras
import numpy as np
import pytest

from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa


def run(controller, curve, epochs=30, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    kappas, errors = [], []
    for epoch in range(epochs):
        kappa = controller.kappa_for_epoch(epoch)
        error = float(np.clip(curve(kappa) + noise * rng.normal(), 0.0, 1.0))
        controller.record(epoch, error)
        kappas.append(kappa)
        errors.append(error)
    return np.array(kappas), np.array(errors)


@pytest.mark.parametrize("target", [0.5, 0.75])
@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_converges_to_target_on_a_decreasing_curve(target, noise):
    curve = lambda kappa: 1.0 / (1.0 + (kappa / 3.0) ** 2)  # noqa: E731 — error falls as κ grows
    controller = AdaptiveKappa(target_error=target, initial_kappa=1.0)
    kappas, errors = run(controller, curve, noise=noise)
    assert np.all(kappas[:3] == 1.0)  # epochs 0, 1 random; epoch 2 starts at the initial κ
    want = 3.0 * np.sqrt(1.0 / target - 1.0)
    np.testing.assert_allclose(np.median(kappas[-8:]), want, rtol=0.1 + 3 * noise)
    assert abs(np.mean(errors[-8:]) - target) < 0.03 + noise


def test_stays_bounded_when_error_does_not_respond():
    controller = AdaptiveKappa(target_error=0.5, initial_kappa=1.0, min_kappa=0.1, max_kappa=8.0, max_step=2.0)
    kappas, _ = run(controller, lambda kappa: 0.9, epochs=40)
    assert np.all((kappas >= 0.1) & (kappas <= 8.0))
    ratios = kappas[1:] / kappas[:-1]
    assert np.all((ratios <= 2.0 + 1e-9) & (ratios >= 0.5 - 1e-9))
    assert kappas[-1] == 8.0  # keeps asking for easier triplets, but only up to the bound
    kappas, _ = run(AdaptiveKappa(target_error=0.5, min_kappa=0.1, max_kappa=8.0), lambda kappa: 0.05, epochs=40)
    assert kappas[-1] == pytest.approx(0.1)


def test_wrong_sign_fit_falls_back_to_prior_slope():
    controller = AdaptiveKappa(initial_slope=-2.0)
    alpha, beta = controller.fit_line([(0.2, 1.0), (0.4, 2.0), (0.6, 3.0)])  # α > 0 would be fitted
    assert alpha == -2.0 and beta == pytest.approx(3.0 + 2.0 * 0.6)
    alpha, beta = controller.fit_line([(0.2, 3.0), (0.4, 2.0), (0.6, 1.0)])
    assert alpha == pytest.approx(-5.0) and beta == pytest.approx(4.0)


def test_kappa_for_epoch_is_stable_and_logged_in_fit():
    controller = AdaptiveKappa(target_error=0.5, start_epoch=1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")

    class FakeError(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["training_error"] = 0.8 if epoch == 0 else 0.6

    history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0,
                        callbacks=[FakeError(), controller])
    # Epoch 0 is before start_epoch, epoch 1 has no feedback yet: the initial κ.
    assert history.history["kappa"][:2] == [1.0, 1.0]
    assert controller.kappa_for_epoch(2) == controller.kappas[2]  # not recomputed
    assert history.history["kappa"][2] > 1.0  # error 0.6 above target → larger κ (easier triplets)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target_error": 1.2}, "target_error"),
        ({"initial_kappa": 100.0}, "max_kappa"),
        ({"initial_slope": 1.0}, "negative"),
        ({"max_step": 1.0}, "max_step"),
        ({"history": 1}, "history"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveKappa(**kwargs)


def test_missing_training_error_is_a_clear_error():
    with pytest.raises(KeyError, match="TripletTrainingError"):
        AdaptiveKappa().on_epoch_end(0, {"loss": 1.0})


def test_checkpoint_state_round_trip_continues_the_same_sequence():
    """A controller restored from a JSON round trip of its state after epoch 5
    chooses the same κ for every later epoch as the one that kept running."""
    import json

    curve = lambda kappa: 1.0 / (1.0 + (kappa / 3.0) ** 2)  # noqa: E731
    straight = AdaptiveKappa(target_error=0.6, initial_kappa=1.0)
    run(straight, curve, epochs=6, noise=0.02, seed=1)
    state = json.loads(json.dumps(straight.checkpoint_state()))
    resumed = AdaptiveKappa(target_error=0.6, initial_kappa=1.0)
    resumed.restore_checkpoint_state(state)
    assert resumed.checkpoint_state() == straight.checkpoint_state()
    for epoch in range(6, 12):
        error = curve(straight.kappa_for_epoch(epoch))
        assert resumed.kappa_for_epoch(epoch) == straight.kappa_for_epoch(epoch)
        straight.record(epoch, error)
        resumed.record(epoch, error)
    fresh = AdaptiveKappa(target_error=0.6, initial_kappa=1.0)
    assert fresh.kappa_for_epoch(6) == 1.0 != straight.kappas[6]  # what a resume used to do
    with pytest.raises(ValueError, match="unreadable checkpoint state"):
        fresh.restore_checkpoint_state({"pairs": [[1, 0.5]]})


def test_epoch_closed_without_on_epoch_end_is_recorded_from_its_running_error():
    """A checkpoint written after the last batch of epoch 2 (before on_epoch_end)
    carries the running error; the resumed controller records (error, κ) of
    epoch 2 when epoch 3 starts, exactly as on_epoch_end would have."""
    straight = AdaptiveKappa(target_error=0.5, initial_kappa=2.0, start_epoch=1)
    for epoch, errors in enumerate([[0.9, 0.8], [0.7, 0.6], [0.5, 0.4]]):
        straight.on_epoch_begin(epoch)
        for batch, error in enumerate(errors):
            straight.on_train_batch_end(batch, {"training_error": error})
        if epoch < 2:
            straight.on_epoch_end(epoch, {"training_error": errors[-1]})
    state = straight.checkpoint_state()
    assert state["running"] == [2, 0.4] and [p[0] for p in state["pairs"]] == [1]
    resumed = AdaptiveKappa(target_error=0.5, initial_kappa=2.0, start_epoch=1)
    resumed.restore_checkpoint_state(state)
    straight.on_epoch_end(2, {"training_error": 0.4})
    resumed.on_epoch_begin(3)
    assert resumed.pairs == straight.pairs and resumed.kappas[3] == straight.kappa_for_epoch(3)

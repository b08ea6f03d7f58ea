"""StaircaseDecay: the released Symm code's learning rate at the step boundaries, serialisation, resume."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.optimizers import StaircaseDecay, every_epochs

# README command of clovaai/symmetrical-synthesis: 1e-4, ×0.5 every 5,000 steps, 1e-5 from 15,000.
OFFICIAL = dict(initial_learning_rate=1e-4, decay_steps=5000, decay_rate=0.5, stop_step=15000, stop_value=1e-5)
EXPECTED = {0: 1e-4, 4999: 1e-4, 5000: 5e-5, 9999: 5e-5, 10000: 2.5e-5, 14999: 2.5e-5, 15000: 1e-5, 40000: 1e-5}


@pytest.mark.parametrize("step,lr", sorted(EXPECTED.items()))
def test_official_schedule_at_the_boundaries(step, lr):
    schedule = StaircaseDecay(**OFFICIAL)
    np.testing.assert_allclose(float(ops.convert_to_numpy(schedule(step))), lr, rtol=1e-6)
    assert schedule.value_at(step) == pytest.approx(lr, rel=1e-12)


def test_tf1_exponential_decay_staircase_reference():
    tf = pytest.importorskip("tensorflow")
    schedule = StaircaseDecay(1e-4, 5000, 0.5)
    reference = tf.keras.optimizers.schedules.ExponentialDecay(1e-4, 5000, 0.5, staircase=True)
    for step in (0, 1, 4999, 5000, 12345, 19999, 20000):
        np.testing.assert_allclose(float(ops.convert_to_numpy(schedule(step))), float(reference(step)), rtol=1e-6)


def test_without_stop_the_decay_continues():
    schedule = StaircaseDecay(1e-4, 5000, 0.5)
    assert schedule.value_at(15000) == pytest.approx(1.25e-5)


def test_smart_mining_halves_every_three_epochs():
    schedule = every_epochs(0.1, 3, steps_per_epoch=49)
    assert schedule.decay_steps == 147
    assert [schedule.value_at(s) for s in (0, 146, 147, 294)] == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_config_round_trip_and_keras_deserialisation():
    schedule = StaircaseDecay(**OFFICIAL)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(clone, StaircaseDecay) and clone.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(initial_learning_rate=0.0, decay_steps=1, decay_rate=0.5), "initial_learning_rate"),
        (dict(initial_learning_rate=1e-4, decay_steps=0, decay_rate=0.5), "decay_steps"),
        (dict(initial_learning_rate=1e-4, decay_steps=10, decay_rate=0.0), "decay_rate"),
        (dict(initial_learning_rate=1e-4, decay_steps=10, decay_rate=0.5, stop_step=5), "together"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StaircaseDecay(**kwargs)


def test_optimizer_resumed_across_a_boundary_continues_the_schedule(tmp_path):
    """An optimizer saved at step 4,999 and restored uses 5e-5 for its next update, as an unbroken run."""
    schedule = StaircaseDecay(1e-4, 5000, 0.5, stop_step=15000, stop_value=1e-5)
    var = keras.Variable(np.ones(3, "float32"))
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    optimizer.build([var])
    optimizer.iterations.assign(4999)
    optimizer.apply([ops.ones(3)], [var])  # the update of step 4,999 (lr 1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(var), 1 - 1e-4, rtol=1e-6)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(5000)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert int(ops.convert_to_numpy(restored.optimizer.iterations)) == 5000
    assert isinstance(restored.optimizer._learning_rate, StaircaseDecay)
    lr_now = restored.optimizer._learning_rate(restored.optimizer.iterations)
    np.testing.assert_allclose(float(ops.convert_to_numpy(lr_now)), 5e-5, rtol=1e-6)


def test_kappa_hand_schedule_starts_larger_and_relaxes():
    from symm_keras.optimizers import KappaSchedule

    schedule = KappaSchedule(16.0)  # start at the first mined epoch (2), halve every 3 epochs, floor 1
    assert [schedule.kappa_for_epoch(e) for e in range(0, 20, 3)] == [16.0, 16.0, 8.0, 4.0, 2.0, 1.0, 1.0]
    assert [KappaSchedule(1.0).kappa_for_epoch(e) for e in (0, 10, 19)] == [1.0, 1.0, 1.0]
    assert KappaSchedule(**schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="KappaSchedule needs"):
        KappaSchedule(4.0, rate=2.0)

"""PKArrayBatches: P×K batches of in-memory arrays, no TensorFlow, under model.fit on TF and JAX."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from symm_keras import data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _arrays(classes=6, per_class=5, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10, 10 + classes), per_class)
    x = rng.normal(size=(len(y), dim)).astype("float32") + y[:, None]
    return x, y


def test_layout_and_every_row_once_per_sampler_epoch():
    x, y = _arrays()
    batches = data.PKArrayBatches(x, y, classes_per_batch=3, images_per_class=2, seed=1)
    assert len(batches) == batches.sampler.steps_per_epoch and batches.batch_size == 6
    seen = []
    for i in range(len(batches)):
        xb, yb = batches[i]
        assert xb.shape == (6, 4) and yb.shape == (6,)
        groups = yb.reshape(3, 2)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 3  # [c1 c1 c2 c2 c3 c3]
        rows = batches.batch_rows(i)
        np.testing.assert_array_equal(xb, x[rows])
        seen.extend(rows.tolist())
    assert set(seen) == set(range(len(y)))


def test_deterministic_per_seed_and_epoch():
    x, y = _arrays()
    a = data.PKArrayBatches(x, y, 3, 2, seed=7)
    b = data.PKArrayBatches(x, y, 3, 2, seed=7)
    epoch0 = [a[i][1].tolist() for i in range(len(a))]
    assert epoch0 == [b[i][1].tolist() for i in range(len(b))]
    peeked = data.PKArrayBatches(x, y, 3, 2, seed=7)
    peeked[0]  # fit's peek, then epoch 0: batch 0 asked again before the epoch is complete
    assert [peeked[i][1].tolist() for i in range(len(peeked))] == epoch0 and peeked.epoch == 0
    a[2]  # asked again after all batches were served: epoch 1
    assert a.epoch == 1
    epoch1 = [a.batch_rows(i).tolist() for i in range(len(a))]
    assert epoch1 == [b.batch_rows(i, epoch=1).tolist() for i in range(len(b))]
    assert epoch1 != [b.batch_rows(i, epoch=0).tolist() for i in range(len(b))]
    resumed = data.PKArrayBatches(x, y, 3, 2, seed=7, start_epoch=1)
    assert [resumed.batch_rows(i).tolist() for i in range(len(resumed))] == epoch1
    other = data.PKArrayBatches(x, y, 3, 2, seed=8)
    assert [other[i][1].tolist() for i in range(len(other))] != epoch0
    assert len(data.PKArrayBatches(x, y, 3, 2, steps_per_epoch=50)) == 50


def test_bad_inputs_have_clear_errors():
    x, y = _arrays()
    with pytest.raises(ValueError, match="x has 30 rows but y has 29 labels"):
        data.PKArrayBatches(x, y[:-1], 3, 2)
    bad = x.copy()
    bad[[4, 17], 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in 2 rows, e.g. rows \[4, 17\]"):
        data.PKArrayBatches(bad, y, 3, 2)
    short_x, short_y = x[:-4], y[:-4]  # the last class keeps 1 row
    with pytest.raises(ValueError, match="1 classes have fewer than images_per_class=2 rows \\(class 15 has 1\\)"):
        data.PKArrayBatches(short_x, short_y, 3, 2)
    dropped = data.PKArrayBatches(short_x, short_y, 3, 2, small_classes="drop")
    assert 15 not in np.concatenate([dropped[i][1] for i in range(len(dropped))])
    with pytest.raises(ValueError, match="y must hold integer class ids"):
        data.PKArrayBatches(x, y.astype("float32"), 3, 2)
    with pytest.raises(ValueError, match="classes_per_batch=7 but only 6 classes"):
        data.PKArrayBatches(x, y, 7, 2)
    with pytest.raises(ValueError, match="use workers \\(threads\\), not use_multiprocessing"):
        data.PKArrayBatches(x, y, 3, 2, workers=2, use_multiprocessing=True)


def test_pk_batches_given_arrays_points_at_pk_array_batches():
    x, _ = _arrays()
    with pytest.raises(TypeError, match="pk_batches takes a SplitIndex .* got ndarray.*PKArrayBatches"):
        data.pk_batches(x, 10, 2)


def _fit_script(backend):
    return textwrap.dedent(
        f"""
        import os, sys
        os.environ["KERAS_BACKEND"] = "{backend}"
        BLOCK_TF = {backend != "tensorflow"}

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if BLOCK_TF and name.split(".")[0] == "tensorflow":
                    raise ModuleNotFoundError("tensorflow is blocked in this test", name="tensorflow")

        sys.meta_path.insert(0, NoTensorFlow())
        import numpy as np
        import keras
        from symm_keras import data

        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(8), 6)
        x = (rng.normal(size=(48, 5)) + y[:, None]).astype("float32")
        seen = []

        class Recorded(data.PKArrayBatches):
            def __getitem__(self, index):
                batch = super().__getitem__(index)
                seen.append(batch[1].tolist())
                return batch

        batches = Recorded(x, y, classes_per_batch=4, images_per_class=2, seed=3)
        expected = [y[batches.batch_rows(i, epoch=e)].tolist() for e in range(2) for i in range(len(batches))]

        def loss(y_true, embeddings):
            return keras.ops.mean(keras.ops.square(embeddings)) + 0.0 * keras.ops.sum(y_true)

        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        model.compile(optimizer="sgd", loss=loss)
        history = model.fit(batches, epochs=2, shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), history.history
        peeked = len(seen) - len(expected)  # JAX peeks one batch to build the model
        assert seen[peeked:] == expected and seen[:peeked] == expected[:peeked], (seen, expected)
        assert batches.epoch == 1
        if BLOCK_TF:
            assert "tensorflow" not in sys.modules
            assert isinstance(data.SplitIndex, type) and data.ClassBalancedSampler(y, 4, 2).batch_size == 8
            try:
                data.pk_batches
            except ModuleNotFoundError as error:
                assert "PKArrayBatches, which needs no TensorFlow" in str(error), error
            else:
                raise AssertionError("pk_batches imported without TensorFlow")
        print("ok", keras.backend.backend())
        """
    )


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_model_fit_on_each_backend(backend):
    """A fresh interpreter per backend; on JAX with TensorFlow made unimportable."""
    if backend == "jax":
        pytest.importorskip("jax")  # an optional backend: an external package
    result = subprocess.run(
        [sys.executable, "-c", _fit_script(backend)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {backend}" in result.stdout

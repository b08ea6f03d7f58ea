"""A file damaged inside its data: the pipelines name it, the decode check finds it before training."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from data_prep.prepare import prepare
from symm_keras import data
from tests.data import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREP = data.ImagePreprocessing(crop_size=16, resize=20, mode="none")


@pytest.fixture(scope="module")
def scrambled(tmp_path_factory):
    base = tmp_path_factory.mktemp("scrambled")
    fake = fixtures.make_cub(str(base), scrambled=True)
    index = data.load_split_index("cub", str(base))
    return fake, index, os.path.join(index.root, fake.scrambled[0])


def test_the_quick_check_cannot_see_it(scrambled):
    _, index, _ = scrambled
    assert data.check_images(index.train(), thorough=False).num_corrupt == 0


def test_training_pipeline_names_the_file_and_the_decode_check(scrambled):
    _, index, path = scrambled
    batches = data.pk_batches(index.train(), 2, 2, PREP, seed=0, num_steps=40)  # default validate="quick"
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in batches:
            pass
    message = str(info.value)
    assert path in message and "--check decode" in message and "`validate=decode`" in message
    row = int(np.flatnonzero(index.train().full_paths() == path)[0])
    assert f"(index row {row})" in message


def test_model_fit_stops_with_the_file_named(scrambled):
    import keras

    _, index, path = scrambled
    batches = data.pk_batches(index.train(), 2, 2, PREP, seed=0)  # endless, as fit uses it
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=lambda y, e: keras.ops.mean(keras.ops.square(e)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=path.replace(".", r"\.")):
        model.fit(batches, steps_per_epoch=10, epochs=3, verbose=0)


def test_eval_dataset_names_a_last_row_that_fails(scrambled):
    _, index, path = scrambled
    train = index.train()
    bad = int(np.flatnonzero(train.full_paths() == path)[0])
    rows = [r for r in range(len(train)) if r != bad] + [bad]  # the failing image is the very last element
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not decode"):
        for _ in data.eval_dataset(train.subset(rows), PREP, batch_size=5):
            pass


def test_healthy_pipelines_are_unchanged_by_the_check(scrambled):
    _, index, _ = scrambled
    test = index.test()  # no damaged image here
    batches = list(data.eval_dataset(test, PREP, batch_size=5, with_rows=True).as_numpy_iterator())
    assert np.concatenate([rows for _, _, rows in batches]).tolist() == list(range(len(test)))
    assert data.eval_dataset(test, PREP, batch_size=5).cardinality().numpy() == len(batches)
    assert data.pk_batches(test, 2, 2, PREP, num_steps=3).cardinality().numpy() == 3


def test_check_decode_finds_it_before_training(scrambled):
    fake, index, path = scrambled
    with pytest.raises(data.CorruptImagesError, match=fake.scrambled[0]) as info:
        data.check_decode(index.train())
    assert info.value.paths == [path]
    with pytest.warns(UserWarning, match="skipping 1 of"):
        result = data.check_decode(index.train(), on_corrupt="skip")
    assert result.decoded == len(index.train()) and result.corrupt_paths == tuple(fake.scrambled)
    n = len(index.train())
    assert result.summary() == f"image check: {n} images, {n} decoded, 1 corrupt: {fake.scrambled[0]}"
    sampler = data.ClassBalancedSampler(index.train().labels, 2, 2, eligible=result.eligible_rows)
    for _ in data.sampler_batches(index.train(), sampler, PREP, num_steps=2 * sampler.steps_per_epoch):
        pass


def test_prepare_decode_check_leaves_it_out(tmp_path):
    fake = fixtures.make_cub(str(tmp_path), scrambled=True)
    summary = prepare("cub", str(tmp_path), check="quick", progress=False)
    assert summary["corrupt_skipped"] == []  # the byte sniff passes it
    with pytest.warns(UserWarning, match="skipping 1 of"):
        summary = prepare("cub", str(tmp_path), check="decode", progress=False)
    assert summary["corrupt_skipped"] == fake.scrambled
    assert fake.scrambled[0] not in data.load_split_index("cub", str(tmp_path)).paths


def test_model_fit_on_jax_stops_with_the_file_named(tmp_path):
    """Keras on JAX reads the tf.data pipeline outside any tf.function: the same message reaches it."""
    pytest.importorskip("jax")  # an optional backend: an external package
    fake = fixtures.make_cub(str(tmp_path), scrambled=True)
    script = textwrap.dedent(
        f"""
        import os
        os.environ["KERAS_BACKEND"] = "jax"
        import keras
        from symm_keras import data

        train = data.load_split_index("cub", {str(tmp_path)!r}).train()
        batches = data.pk_batches(train, 2, 2, data.ImagePreprocessing(crop_size=16, resize=20, mode="none"))
        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss=lambda y, e: keras.ops.mean(keras.ops.square(e)))
        model.fit(batches, steps_per_epoch=10, epochs=3, verbose=0)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "InvalidArgumentError" in result.stderr and fake.scrambled[0] in result.stderr
    assert "--check decode" in result.stderr

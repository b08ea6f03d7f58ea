"""Image sources (tf.data) feed a model on the JAX backend: training batches and the evaluation pass.

Regression: ``train.embed`` passed tf tensors to ``predict_on_batch``, which JAX
rejects, so every image run on the JAX backend failed at its first evaluation
(the digits runs, from numpy arrays, did not show it).
"""

from tests.experiments.helpers import run_script

CODE = r"""
import sys, tempfile
import keras, numpy as np
from experiments import train
from experiments.sources import ImageSource
from symm_keras import data
from tests.data.fixtures import make_cub

assert keras.backend.backend() == "jax", keras.backend.backend()
fake = make_cub(tempfile.mkdtemp(), images_per_class=3)
index = data.load_split_index("cub", fake.root)
prep = data.ImagePreprocessing(crop_size=32, resize=36, mode="tf", random_flip=False)
train_src = ImageSource(index.train(), prep, "train")
test_src = ImageSource(index.test(), prep, "test")
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(8)])
model.compile(optimizer="sgd", loss="mse")
history = model.fit(train_src.pk_batches(2, 2, seed=0).map(lambda x, y: (x, keras.ops.zeros((4, 8)))),
                    steps_per_epoch=2, epochs=1, verbose=0)
assert np.isfinite(history.history["loss"]).all()
embeddings, labels = train.embed(model, test_src, batch_size=5)
images = np.concatenate([x for x, _ in test_src.eval_dataset(batch_size=5).as_numpy_iterator()])
np.testing.assert_allclose(embeddings, model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
assert sorted(labels.tolist()) == sorted(test_src.labels.tolist())
print("ok", embeddings.shape)
"""


def test_image_source_trains_and_embeds_on_jax():
    done = run_script(CODE, env={"KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "ok (12, 8)" in done.stdout

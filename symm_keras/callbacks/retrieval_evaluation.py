"""Keras callback: Recall@K, R-precision, MAP@R, NMI and F1 on a validation set every N epochs or steps.

The metrics are those of :func:`symm_keras.evaluation.evaluate_embeddings`.
They are written into the epoch's ``logs`` (prefixed, e.g. ``val_recall@1``),
so ``History`` records them and a ``keras.callbacks.TensorBoard`` placed
**after** this callback in the list plots them; with ``log_dir`` the callback
also writes them as TensorBoard scalars itself (tag = logged name, step =
epoch index, or the step count with ``every_n_steps``).
"""

import keras
import numpy as np

from symm_keras.evaluation import evaluate_embeddings
from symm_keras.ops.host import to_numpy


def _is_tf_dataset(data):
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(data, tf.data.Dataset)


class RetrievalEvaluation(keras.callbacks.Callback):
    """Embed a labelled validation set and log every retrieval/clustering metric.

    Args:
        data: ``(inputs, labels)`` arrays, or a ``tf.data.Dataset`` of
            ``(inputs, labels)`` batches (extra elements such as sample weights
            are ignored); iterated afresh at every evaluation.
        every_n_epochs: evaluate after epochs ``N, 2N, …`` (1-based); epochs
            in between add nothing to ``logs``.
        every_n_steps: evaluate after training steps ``N, 2N, …`` instead
            (counted by the callback across ``fit`` calls from
            ``initial_step``; the batch's ``logs`` get the metrics).
        initial_step: steps trained before the first ``fit`` (a resumed run).
        recall_ks: Recall@K cut-offs (see ``STANDARD_RECALL_KS``).
        prefix: prepended to every metric name in ``logs``.
        log_dir: if given, also write the metrics as TensorBoard scalars there.
        batch_size: prediction batch size for array inputs.
        verbose: 1 prints one line per evaluation.
        **evaluate_kwargs: passed to ``evaluate_embeddings`` (``metric``,
            ``clustering``, ``kmeans``, ``seed``, ``knn_backend``, …).

    Attributes:
        results: ``[(epoch or step, EvaluationResult), …]`` of every evaluation so far.
        step: training steps counted so far (with ``every_n_steps``).
    """

    def __init__(
        self,
        data,
        every_n_epochs=1,
        every_n_steps=None,
        initial_step=0,
        recall_ks=(1, 2, 4, 8),
        prefix="val_",
        log_dir=None,
        batch_size=256,
        verbose=0,
        **evaluate_kwargs,
    ):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, (int, np.integer)) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}.")
        if every_n_steps is not None and (
            isinstance(every_n_steps, bool) or not isinstance(every_n_steps, (int, np.integer)) or every_n_steps < 1
        ):
            raise ValueError(f"every_n_steps must be None or a positive integer, got {every_n_steps!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {prefix!r}.")
        if _is_tf_dataset(data):
            self._arrays = None
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            inputs, labels = data
            num_inputs = len(inputs) if not hasattr(inputs, "shape") else inputs.shape[0]
            if num_inputs != len(labels):
                raise ValueError(f"data has {num_inputs} inputs but {len(labels)} labels.")
            self._arrays = (inputs, np.asarray(labels))
        else:
            raise ValueError(
                "data must be a tf.data.Dataset of (inputs, labels) batches or an (inputs, labels) "
                f"pair of arrays, got {type(data).__name__}."
            )
        self.data = data
        self.every_n_epochs = int(every_n_epochs)
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.step = int(initial_step)
        self.recall_ks = tuple(recall_ks)
        self.prefix = prefix
        self.log_dir = log_dir
        self.batch_size = int(batch_size)
        self.verbose = verbose
        self.evaluate_kwargs = evaluate_kwargs
        self.results = []
        self._writer = None

    def _predict(self, inputs):
        outputs = self.model.predict_on_batch(inputs)
        if isinstance(outputs, (list, tuple, dict)):
            raise ValueError(
                "RetrievalEvaluation needs a model with a single embedding output, "
                f"got {type(outputs).__name__} of outputs."
            )
        return to_numpy(outputs)

    def embed(self):
        """``(embeddings, labels)`` of the whole validation set under the current weights
        (float32 embeddings, whatever the model's compute dtype)."""
        if self._arrays is not None:
            inputs, labels = self._arrays
            embeddings = self.model.predict(inputs, batch_size=self.batch_size, verbose=0)
            if isinstance(embeddings, (list, tuple, dict)):
                raise ValueError("RetrievalEvaluation needs a model with a single embedding output.")
            return np.asarray(embeddings, dtype="float32"), labels
        embeddings, labels = [], []
        for batch in self.data.as_numpy_iterator():
            if not isinstance(batch, tuple) or len(batch) < 2:
                raise ValueError("the validation dataset must yield (inputs, labels) batches.")
            embeddings.append(self._predict(batch[0]))
            labels.append(np.asarray(batch[1]).reshape(-1))
        if not embeddings:
            raise ValueError("the validation dataset is empty.")
        return np.concatenate(embeddings).astype("float32"), np.concatenate(labels)

    def evaluate(self):
        """Embed the validation set and return its ``EvaluationResult``."""
        embeddings, labels = self.embed()
        return evaluate_embeddings(embeddings, labels, recall_ks=self.recall_ks, **self.evaluate_kwargs)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps is None:
            return
        self.step += 1
        if self.step % self.every_n_steps == 0:
            self._report(self.step, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_steps is None and (epoch + 1) % self.every_n_epochs == 0:
            self._report(epoch, logs)

    def _report(self, index, logs):
        """Evaluate; record, log and print the result under ``index`` (epoch or step)."""
        result = self.evaluate()
        self.results.append((index, result))
        values = {self.prefix + name: value for name, value in result.as_dict().items()}
        if logs is not None:
            logs.update(values)
        if self.log_dir is not None:
            self._write_scalars(values, index)
        if self.verbose:
            shown = "  ".join(f"{name} {value:.4f}" for name, value in values.items())
            unit = "Step" if self.every_n_steps is not None else "Epoch"
            print(f"{unit} {index + (self.every_n_steps is None)}: {shown}")

    def _write_scalars(self, values, step):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(name, value, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

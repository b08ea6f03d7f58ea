"""The thin ``keras.losses.Loss`` shell shared by every loss in the package.

Each loss module follows Keras's own pattern (``keras/src/losses/losses.py``):
a functional form ``foo_loss(y_true, y_pred, **params)`` that does the math with
``keras.ops`` and returns the batch's loss (a scalar), its per-sample form
``foo_loss_per_sample`` (shape ``(B,)``, mean = ``foo_loss``), plus a small class::

    @register
    class FooLoss(EmbeddingLoss):
        def __init__(self, margin=0.2, name="foo_loss", **kwargs):
            super().__init__(foo_loss_per_sample, name=name, margin=margin, **kwargs)

The Keras contract. Calling a loss object returns Keras's reduction of the
per-sample values, so ``reduction="none"`` gives the ``(B,)`` vector,
``"sum"`` gives ``B ×`` the loss, the default ``"sum_over_batch_size"`` the
loss, and ``sample_weight`` / ``class_weight`` weight each batch row's
terms (:func:`symm_keras.ops.per_sample_values`: a term of several rows is
shared equally among them). A loss whose value is no sum of per-row terms
(``per_sample = False``: the Smart Mining global loss, a function of batch
variances) raises ``ValueError`` when given ``sample_weight`` or a
reduction other than ``"sum_over_batch_size"``. Labels are never cast to a
float (Keras's default would merge labels above ``2**24``): see
:func:`symm_keras.ops.labels_as_integers`.

``EmbeddingLoss`` stores the parameters, round-trips them through
``get_config`` and always computes in float32 (or float64 when asked), also
under a mixed-precision policy.

Loss parts. A loss whose value is a sum of named terms also has a functional
``foo_loss_parts(y_true, y_pred, **params)`` returning a dict of scalars: the
key ``"loss"`` (exactly the loss value), the terms listed in the class's
``summands`` (they add up to ``"loss"``) and the diagnostics in
``diagnostics`` (e.g. ``active_share``, the share of hinge terms that are
non-zero). The class names it in ``parts_fn``; :meth:`EmbeddingLoss.parts`
evaluates it with the loss's own parameters, and
:class:`symm_keras.metrics.LossPart` logs one entry. The loss itself never
computes the diagnostics.
"""

import keras
from keras import ops
from keras.src.losses.loss import reduce_weighted_values  # Keras's own reduction, reused as is

from symm_keras.ops.dtypes import as_float  # noqa: F401  (re-exported for the loss modules)
from symm_keras.ops.labels import labels_as_integers
from symm_keras.ops.reductions import safe_mean

register = keras.saving.register_keras_serializable(package="symm_keras")

#: One name per concept across the losses: ``angle=`` (degrees), ``margin=``,
#: ``synthesis_alpha=``/``synthesis_beta=`` (Symm eq. 2), ``l2_reg=``. The bare
#: Greek names meant an angle in one loss and a synthesis coefficient in
#: another, so they are refused with the new name.
RENAMED_OPTIONS = {
    "alpha": "an angle is angle= (degrees), the Symm synthesis coefficient synthesis_alpha=",
    "beta": "the Symm synthesis scale is synthesis_beta=, a margin margin=",
}


def active_share(terms, mask):
    """Share of the hinge ``terms`` selected by ``mask`` that are non-zero (0 if none).

    The "active" (violating) share reported as a loss part; not differentiated.
    """
    terms = ops.stop_gradient(terms)
    mask = ops.logical_and(ops.cast(mask, "bool"), ops.ones_like(terms, dtype="bool"))
    active = ops.logical_and(mask, ops.greater(terms, 0.0))
    count = ops.sum(ops.cast(mask, terms.dtype))
    return ops.sum(ops.cast(active, terms.dtype)) / ops.maximum(count, 1.0)


def hinge_parts(per_sample, hinge, mask):
    """``{"loss", "hinge", "active_share"}`` of a hinge loss (triplet, semi-hard, lifted and
    their Symm forms): the loss, the mean of ``per_sample``, is its one summand;
    ``active_share`` is the share of the ``mask``-ed ``hinge`` terms that are non-zero."""
    loss = safe_mean(per_sample)
    return {"loss": loss, "hinge": loss, "active_share": active_share(hinge, mask)}


class EmbeddingLoss(keras.losses.Loss):
    """Base class: ``y_true`` integer labels ``(B,)``/``(B, 1)``, ``y_pred`` ``(B, D)``.

    Args:
        fn: per-sample functional form (``(B,)`` values whose mean is the
            loss), or the scalar functional when ``per_sample`` is False.
        name: loss name.
        reduction: Keras reduction of the per-sample values (module docstring).
        dtype: computation dtype; ``None`` means float32 even under a
            mixed-precision policy (Keras losses default to ``floatx``).
        **params: the loss's hyper-parameters, passed to ``fn`` and saved in
            the config.

    Class attributes (the batch contract, read by the shared loss tests):
        batch_layout: ``"pk"`` for class-balanced batches of labelled
            embeddings (other layouts are tested by their owners).
        images_per_class: ``None`` if the loss uses every image of any layout,
            else the ``K`` it is built for (2: N-pair, angular, Symm); other
            layouts are defined by :func:`symm_keras.ops.pair_indices` (the
            first two images of each class).
        zero_without_positives: the loss is 0 with zero gradient for a batch
            without any positive pair.
    """

    batch_layout = "pk"
    #: ``fn`` returns per-sample values; False: a batch-level scalar only.
    per_sample = True
    images_per_class = None
    zero_without_positives = True
    #: ``foo_loss_parts`` functional (``None``: the loss reports no parts).
    parts_fn = None
    #: parts whose sum is the loss value, and extra reported quantities.
    summands = ()
    diagnostics = ()
    #: prefix of the logged names, e.g. ``"npair"`` -> ``npair_softmax``.
    parts_prefix = None

    #: old option names this loss refuses, with the message naming the new one.
    renamed_options = RENAMED_OPTIONS

    def __init__(self, fn, name, reduction="sum_over_batch_size", dtype=None, **params):
        for old, new in type(self).renamed_options.items():
            if old in params:
                raise ValueError(f"{type(self).__name__} has no option {old!r}: {new}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._params = dict(params)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._params)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras's ``Loss.__call__`` (masks aside), with ``y_true`` kept integer."""
        if not type(self).per_sample and (
            sample_weight is not None or self.reduction not in ("sum_over_batch_size", "mean")
        ):
            raise ValueError(
                f"{type(self).__name__} is a batch-level loss with no per-sample form: "
                "sample_weight, class_weight and reduction other than 'sum_over_batch_size' "
                f"are not defined for it (got reduction={self.reduction!r}, "
                f"sample_weight={'given' if sample_weight is not None else None})."
            )
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            values = self.call(labels_as_integers(y_true), y_pred)
            return reduce_weighted_values(
                values, sample_weight=sample_weight, reduction=self.reduction, dtype=self.dtype
            )

    @property
    def part_names(self):
        """Every key :meth:`parts` returns besides ``"loss"``."""
        return tuple(self.summands) + tuple(self.diagnostics)

    def parts(self, y_true, y_pred):
        """Dict of the loss value (``"loss"``) and its parts for one batch.

        Same dtype handling as calling the loss; raises ``ValueError`` for a
        loss without a parts functional.
        """
        parts_fn = type(self).parts_fn
        if parts_fn is None:
            raise ValueError(f"{type(self).__name__} does not report loss parts (no parts_fn).")
        # As __call__: embeddings in the loss dtype, labels kept integer.
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = labels_as_integers(y_true)
        return parts_fn(y_true, y_pred, **self._params)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}
        config.update(self._params)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

"""Coupled L2 weight decay and per-variable gradient multipliers (Caffe / TF1 training).

Keras's ``weight_decay`` argument is *decoupled* (AdamW, Loshchilov & Hutter
2019): ``θ ← θ − lr·wd·θ`` next to the update. The papers' frameworks couple
it instead: the L2 term is part of the objective, so its gradient goes
through momentum and Adam's normalisation like every other gradient:

* TF1, released Symm code (clovaai/symmetrical-synthesis ``train.py``,
  ``w_wd=5e-3``): ``total_loss += w_wd · Σ_w tf.nn.l2_loss(w)`` over every
  trainable variable whose name has no ``BatchNorm`` / ``batch_normalization``
  / ``center`` (biases included), i.e. ``coef · Σ ½‖w‖²``;
* Caffe (Smart Mining's ``weight_decay: 5e-4``, DAMLRRM): the solver adds
  ``coef · w`` to the gradient before the momentum update, the gradient of
  the same term.

Both are ``g ← g + coef · w``, which :class:`CoupledDecayMixin` adds to each
gradient before the wrapped optimizer's update. The released Symm code also
multiplies the embedding head's *gradient* by ``w_fc = 10`` after that sum
(``gradient = FLAGS.w_fc * gradient`` for ``feature_extractor`` variables)::

    g ← m · (∂loss/∂w + coef · w)

Under Adam a constant gradient scale cancels (``m̂ / √v̂``, up to ε), so that
head trains at an effective 1× (the 10× learning-rate form is
``symm_keras.models.with_lr_multipliers``). :func:`coupled_l2_penalty` is the
term itself, for logging it as TF1's ``wd_loss`` summary or adding it to a loss.
"""

import keras
from keras import ops

from symm_keras.models.lr_multiplier import _PathMultipliers

register = keras.saving.register_keras_serializable(package="symm_keras")


def decayed_variables(model):
    """The trainable variables of ``model`` outside batch-normalisation layers (the decayed set)."""
    excluded = {id(v) for v in batchnorm_variables(model)}
    return [v for v in model.trainable_variables if id(v) not in excluded]


def batchnorm_variables(model):
    """Variables of every ``keras.layers.BatchNormalization`` layer in ``model`` (nested models included)."""
    return [
        v
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.weights
    ]


def coupled_l2_penalty(variables, coefficient):
    """``coefficient · Σ_w ½‖w‖²`` in float32 (TF1 ``w_wd · Σ tf.nn.l2_loss(w)``; gradient ``coefficient · w``)."""
    total = ops.convert_to_tensor(0.0, "float32")
    for variable in variables:
        w = ops.cast(variable, "float32")
        total = ops.add(total, ops.multiply(0.5, ops.sum(ops.square(w))))
    return ops.multiply(float(coefficient), total)


class CoupledDecayMixin:
    """Adds ``coupled_weight_decay · w`` to each gradient, then scales it by a per-variable multiplier.

    Put it before the optimizer class: ``class X(CoupledDecayMixin, keras.optimizers.Adam)``
    (or before ``LRMultiplierMixin`` to combine with learning-rate multipliers).
    Variables excluded with the optimizer's ``exclude_from_weight_decay``
    (call it before ``build``; :func:`with_coupled_decay` excludes a model's
    batch-norm variables) get no decay term.

    Args:
        coupled_weight_decay: ``coef`` of ``coef · Σ ½‖w‖²`` (>= 0).
        gradient_multipliers: dict ``{regex on variable.path: multiplier}``
            applied to the summed gradient (first match wins, else 1.0).
        *args, **kwargs: the wrapped optimizer's arguments; its decoupled
            ``weight_decay`` must be unset (one form of decay at a time).
    """

    def __init__(self, *args, coupled_weight_decay=0.0, gradient_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        coupled_weight_decay = float(coupled_weight_decay)
        if not 0.0 <= coupled_weight_decay < float("inf"):
            raise ValueError(f"coupled_weight_decay must be finite and >= 0, got {coupled_weight_decay}")
        if coupled_weight_decay and self.weight_decay:
            raise ValueError(f"give coupled_weight_decay ({coupled_weight_decay}) or the decoupled weight_decay "
                             f"({self.weight_decay}), not both")  # fmt: skip
        self.coupled_weight_decay = coupled_weight_decay
        self._gradient_multipliers = _PathMultipliers(gradient_multipliers)

    @property
    def gradient_multipliers(self):
        return self._gradient_multipliers.as_dict()

    def gradient_multiplier_for(self, variable):
        """The gradient multiplier of ``variable`` (first matching pattern, else 1.0)."""
        return self._gradient_multipliers.of(variable)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._gradient_multipliers.build(variables)

    def update_step(self, gradient, variable, learning_rate):
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay and self._use_weight_decay(variable):
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.coupled_weight_decay, variable.dtype), variable))
        multiplier = self._gradient_multipliers.values[self._get_variable_index(variable)]
        if multiplier != 1.0:
            gradient = ops.multiply(gradient, ops.cast(multiplier, variable.dtype))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["coupled_weight_decay"] = self.coupled_weight_decay
        config["gradient_multipliers"] = self.gradient_multipliers
        return config


_CLASSES = {}


def coupled_decay_class(optimizer_class):
    """The ``CoupledDecayMixin`` subclass of ``optimizer_class``, registered as ``symm_keras>Coupled{Name}``.

    To load a saved model using one in a new process, call this for its class first
    (the Adam, SGD and their LR-multiplier forms are registered at import).
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(f"expected a keras.optimizers.Optimizer subclass, got {optimizer_class!r}")
    if issubclass(optimizer_class, CoupledDecayMixin):
        return optimizer_class
    if optimizer_class not in _CLASSES:
        name = f"Coupled{optimizer_class.__name__}"
        cls = type(name, (CoupledDecayMixin, optimizer_class),
                   {"__doc__": f"``{optimizer_class.__name__}`` with coupled L2 decay and gradient multipliers.",
                    "__module__": __name__})  # fmt: skip
        _CLASSES[optimizer_class] = register(cls)
    return _CLASSES[optimizer_class]


def with_coupled_decay(optimizer, coupled_weight_decay, model=None, gradient_multipliers=None):
    """A copy of ``optimizer`` with coupled L2 decay (and gradient multipliers).

    Args:
        optimizer: an optimizer instance (its config is copied, LR multipliers
            and schedules included) or a name for ``keras.optimizers.get``.
        coupled_weight_decay: ``coef`` of ``coef · Σ ½‖w‖²``.
        model: when given, its batch-norm variables are excluded from the decay
            (as the released Symm code's ``weight_check``).
        gradient_multipliers: ``{regex on variable.path: multiplier}``, e.g.
            ``{"^embedding_head/": 10.0}`` for the released code's ``w_fc``.

    Returns:
        A new, unbuilt optimizer.
    """
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"`optimizer` must be a Keras optimizer or name, got {optimizer!r}")
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError("wrap the inner optimizer, then the LossScaleOptimizer: "
                        "LossScaleOptimizer(with_coupled_decay(inner, ...))")  # fmt: skip
    config = optimizer.get_config()
    config.update(coupled_weight_decay=coupled_weight_decay, gradient_multipliers=gradient_multipliers)
    result = coupled_decay_class(type(optimizer)).from_config(config)
    if model is not None:
        result.exclude_from_weight_decay(var_list=batchnorm_variables(model))
    return result


def _register_common():
    from symm_keras.models.lr_multiplier import AdamWithLRMultipliers, SGDWithLRMultipliers

    for cls in (keras.optimizers.Adam, keras.optimizers.SGD, AdamWithLRMultipliers, SGDWithLRMultipliers):
        coupled_decay_class(cls)


_register_common()

"""Per-variable learning-rate multipliers for Keras optimizers (Caffe's ``lr_mult``).

DAMLRRM (Sec. 4: "10 times faster for the newly added fully connected
layer") and Smart Mining (Sec. 4: "multiplied by 10") train the randomly
initialised embedding layer with a learning rate 10 times that of the
pretrained backbone. The Symm paper states no multiplier; its released code
multiplies the head's *gradient* by 10, which Adam cancels (that form is
``symm_keras.optimizers.with_coupled_decay(..., gradient_multipliers=...)``).

The multiplier scales the *learning rate* used in each variable's update, not
its gradient. For SGD both are the same, but Adam normalises the gradient
(``m̂ / (√v̂ + ε)``), so a scaled gradient gives (almost) the same step; only a
scaled learning rate gives the intended ``m ×`` step::

    θ ← θ − (m · lr) · update(g)             (update = Adam/SGD/... rule)
    θ ← θ − (m · lr) · wd · θ                (decoupled weight decay, as Caffe)

Usage::

    optimizer = AdamWithLRMultipliers(
        learning_rate=1e-4, lr_multipliers={"^embedding_head/": 10.0})
    # or wrap an existing optimizer / name
    optimizer = with_lr_multipliers("adam", {"^embedding_head/": 10.0})

``lr_multipliers`` maps a regular expression, searched in each trainable
variable's ``path`` (e.g. ``"embedding_head/kernel"``), to a multiplier; the
first pattern that matches wins and unmatched variables keep 1.0. The mapping
is part of ``get_config`` so the optimizer saves and loads with the model.
Works on the TensorFlow backend (incl. ``tf.distribute``) and on JAX (the
stateless ``model.fit`` path), because it hooks ``update_step``, which every
backend calls once per variable.
"""

import re

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="symm_keras")


def _check_multipliers(lr_multipliers):
    if lr_multipliers is None:
        return ()
    if not isinstance(lr_multipliers, dict):
        raise TypeError(
            "`lr_multipliers` must be a dict {variable-path regex: multiplier}, "
            f"got {type(lr_multipliers).__name__}: {lr_multipliers!r}"
        )
    checked = []
    for pattern, multiplier in lr_multipliers.items():
        if not isinstance(pattern, str):
            raise TypeError(f"`lr_multipliers` keys must be regex strings, got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"`lr_multipliers` key {pattern!r} is not a valid regex: {err}") from None
        try:
            multiplier = float(multiplier)
        except (TypeError, ValueError):
            raise TypeError(f"`lr_multipliers[{pattern!r}]` must be a number, got {multiplier!r}") from None
        if not multiplier >= 0.0 or multiplier == float("inf"):
            raise ValueError(f"`lr_multipliers[{pattern!r}]` must be finite and >= 0, got {multiplier}")
        checked.append((pattern, multiplier))
    return tuple(checked)


def _variable_path(variable):
    return getattr(variable, "path", None) or variable.name


class _PathMultipliers:
    """Checked ``{regex on variable.path: multiplier}``: the first matching pattern wins, else 1.0.

    ``values`` holds one multiplier per optimizer variable once :meth:`build` ran.
    """

    def __init__(self, multipliers):
        self.rules = _check_multipliers(multipliers)
        self.values = ()

    def as_dict(self):
        return dict(self.rules)

    def of(self, variable):
        path = _variable_path(variable)
        for pattern, multiplier in self.rules:
            if re.search(pattern, path):
                return multiplier
        return 1.0

    def build(self, variables):
        self.values = tuple(self.of(v) for v in variables)


class LRMultiplierMixin:
    """Mixin that gives any Keras optimizer per-variable learning-rate multipliers.

    Put it before the optimizer class: ``class X(LRMultiplierMixin, keras.optimizers.SGD)``.
    See the module docstring for the update rule.

    Args:
        lr_multipliers: dict ``{regex on variable.path: multiplier}``.
        *args, **kwargs: the wrapped optimizer's arguments.
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lr_multipliers = _PathMultipliers(lr_multipliers)

    @property
    def lr_multipliers(self):
        return self._lr_multipliers.as_dict()

    def lr_multiplier_for(self, variable):
        """The multiplier of ``variable`` (first matching pattern, else 1.0)."""
        return self._lr_multipliers.of(variable)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._lr_multipliers.build(variables)

    def _scaled_learning_rate(self, learning_rate, variable):
        multiplier = self._lr_multipliers.values[self._get_variable_index(variable)]
        learning_rate = ops.cast(learning_rate, variable.dtype)
        if multiplier == 1.0:
            return learning_rate
        return ops.multiply(learning_rate, ops.cast(multiplier, variable.dtype))

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self._scaled_learning_rate(learning_rate, variable)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = ops.multiply(ops.cast(self.weight_decay, variable.dtype), learning_rate)
            self.assign_sub(variable, ops.multiply(variable, decay))
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        # Decoupled weight decay is applied per variable in `update_step`, with
        # the variable's own (multiplied) learning rate, as Caffe does.
        return None

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = self.lr_multipliers
        return config


@register
class SGDWithLRMultipliers(LRMultiplierMixin, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (momentum, Nesterov, weight decay) with per-variable LR multipliers."""


@register
class AdamWithLRMultipliers(LRMultiplierMixin, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable LR multipliers."""


@register
class AdamWWithLRMultipliers(LRMultiplierMixin, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with per-variable LR multipliers."""


@register
class RMSpropWithLRMultipliers(LRMultiplierMixin, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` with per-variable LR multipliers."""


_CLASSES = {
    keras.optimizers.SGD: SGDWithLRMultipliers,
    keras.optimizers.Adam: AdamWithLRMultipliers,
    keras.optimizers.AdamW: AdamWWithLRMultipliers,
    keras.optimizers.RMSprop: RMSpropWithLRMultipliers,
}


def lr_multiplier_class(optimizer_class):
    """The ``LRMultiplierMixin`` subclass of ``optimizer_class`` (created and registered once).

    Classes made here for optimizers other than SGD/Adam/AdamW/RMSprop are
    registered as ``symm_keras>{Name}WithLRMultipliers``; to load a saved model
    using one in a new process, call this function for that class first.
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(f"expected a keras.optimizers.Optimizer subclass, got {optimizer_class!r}")
    if issubclass(optimizer_class, LRMultiplierMixin):
        return optimizer_class
    if optimizer_class not in _CLASSES:
        name = f"{optimizer_class.__name__}WithLRMultipliers"
        cls = type(
            name,
            (LRMultiplierMixin, optimizer_class),
            {"__doc__": f"``{optimizer_class.__name__}`` with per-variable LR multipliers.", "__module__": __name__},
        )
        _CLASSES[optimizer_class] = register(cls)
    return _CLASSES[optimizer_class]


def with_lr_multipliers(optimizer, lr_multipliers):
    """A copy of ``optimizer`` whose update uses ``multiplier × lr`` per variable.

    Args:
        optimizer: an optimizer instance (its config is copied), an optimizer
            class, or a name accepted by ``keras.optimizers.get`` (``"adam"``).
        lr_multipliers: dict ``{regex on variable.path: multiplier}``, e.g.
            ``{"^embedding_head/": 10.0}``.

    Returns:
        A new, unbuilt optimizer instance (a ``LRMultiplierMixin`` subclass).
    """
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, type):
        return lr_multiplier_class(optimizer)(lr_multipliers=lr_multipliers)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"`optimizer` must be a Keras optimizer, class or name, got {optimizer!r}")
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError(
            "wrap the inner optimizer, then the LossScaleOptimizer: "
            "LossScaleOptimizer(with_lr_multipliers(inner, ...))"
        )
    config = optimizer.get_config()
    config["lr_multipliers"] = lr_multipliers
    return lr_multiplier_class(type(optimizer)).from_config(config)

"""A training method defined outside ``experiments/methods`` (``train.py --plugins``), for the tests."""

from experiments import methods


@methods.register_method("npair_plugin_test", l2_normalize=True)
def build(context):
    """The N-pair plan under another name."""
    return methods.get_method("npair")(context)

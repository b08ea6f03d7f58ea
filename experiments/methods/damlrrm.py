"""DAMLRRM (Xu et al., CVPR 2019): asymmetric neat + shuffled streams, graph + shuffled loss.

Batch ``t`` is ``[B^x; B^s]`` from :class:`symm_keras.data.AsymmetricSampler`:
the neat batch of ``classes_per_batch`` (m) classes × ``images_per_class`` (k)
images followed by ``shuffled_size`` (default m·k) images of the shuffled
pool; the two pools have different lengths (eq. 2), so a shuffled batch meets
a different neat batch every time it comes round. The loss is
:class:`symm_keras.losses.damlrrm.DAMLRRMLoss` (``L_g + L_s``, eq. 4–6) with
``config.loss_kwargs`` (``boundary``, ``margin``, ``terms``, ``positive_pairs``; the paper's
α and β, Sec. 3.3).

Logged: the loss parts (``damlrrm_graph_loss``, ``damlrrm_shuffled_loss``,
``damlrrm_violating_pairs``, ``damlrrm_mean_tree_edge``) as compiled metrics,
and the sampling size (Table 6) through
:class:`symm_keras.callbacks.sampling_size.SamplingSize`.

``config.method_kwargs`` may set ``shuffled_size``, ``neat_pool_batches`` and
``shuffled_pool_batches`` (see ``AsymmetricSampler``). An "epoch" is one pass
over the neat pool.
"""

from experiments.methods import MethodPlan, register_method

SAMPLER_OPTIONS = ("shuffled_size", "neat_pool_batches", "shuffled_pool_batches")
LOSS_OPTIONS = ("boundary", "margin", "terms", "positive_pairs")


def _check_options(cfg):
    unknown = sorted(set(cfg.method_kwargs) - set(SAMPLER_OPTIONS))
    if unknown:
        raise ValueError(f"--method damlrrm: unknown method_kwargs {unknown}; allowed: {list(SAMPLER_OPTIONS)}")
    unknown = sorted(set(cfg.loss_kwargs) - set(LOSS_OPTIONS))
    if unknown:
        raise ValueError(
            f"--method damlrrm: unknown loss_kwargs {unknown}; allowed: {list(LOSS_OPTIONS)} "
            "(the paper's α is boundary, β is margin; neat_size and images_per_class follow the batch layout)"
        )
    if cfg.images_per_class < 2:
        raise ValueError(
            f"--method damlrrm needs >= 2 images per class in the neat stream (a tree needs an edge), "
            f"got --images_per_class {cfg.images_per_class}"
        )


@register_method("damlrrm")
def build_damlrrm(context):
    from symm_keras import data
    from symm_keras.callbacks.sampling_size import SamplingSize
    from symm_keras.losses.damlrrm import DAMLRRMLoss
    from symm_keras.metrics.damlrrm_parts import damlrrm_metrics

    from experiments.sources import array_batches

    cfg = context.config
    _check_options(cfg)
    source = context.train_source
    m, k, seed = cfg.classes_per_batch, cfg.images_per_class, context.seed
    images = getattr(source, "kind", None) == "images"
    eligible = data.eligible_rows(source.index) if images else None
    sampler = data.AsymmetricSampler(
        source.labels, m, k, seed=seed, eligible=eligible, **{key: int(v) for key, v in cfg.method_kwargs.items()}
    )

    def batches(start_step, num_steps=None):
        if images:
            return data.sampler_batches(source.index, sampler, source.preprocessing, seed=seed,
                                        start_step=start_step, num_steps=num_steps)  # fmt: skip
        return array_batches(source.x, source.labels, sampler.batch_rows, sampler.batch_size, start_step, num_steps)

    loss_options = dict(cfg.loss_kwargs, neat_size=sampler.neat_size, images_per_class=k)
    return MethodPlan(
        train_batches=batches,
        loss=DAMLRRMLoss(**loss_options),
        steps_per_epoch=sampler.neat_pool_batches,
        metrics=damlrrm_metrics(**loss_options),
        callbacks=[
            SamplingSize(sampler, global_step=context.global_step, summary_writer=context.summary_writer)
        ],
        batch_layout="damlrrm",
        description=(
            f"DAMLRRMLoss ({cfg.loss_kwargs.get('terms', 'both')}) on neat {m}x{k} + shuffled "
            f"{sampler.shuffled_size} batches; pools of {sampler.neat_pool_batches} / "
            f"{sampler.shuffled_pool_batches} batches (sampling size {sampler.sampling_size})"
        ),
    )

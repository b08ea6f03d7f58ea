"""The trainer: one resumable training run, an explicit epoch loop over ``model.fit``.

``run_training(cfg, train_source, test_source, logdir)`` does, in order:

1. builds everything before touching ``logdir`` (model, method plan,
   optimizer; a failure is a :class:`UsageError`);
2. locks ``logdir`` (``experiments.rundir``), clears it with ``restart``, and
   restores the newest readable checkpoint (a damaged one is skipped with a
   warning); a checkpoint of another config is refused naming the fields that
   differ, except ``steps``/``epochs``: a finished run is extended;
3. trains epoch by epoch: ``plan.prepare_epoch(e)`` (Smart Mining mines
   here), then ``model.fit`` on the epoch's finite batch stream with the
   method's callbacks and the trainer's (``experiments.callbacks``: step
   counter, scalars, periodic evaluation, divergence guard, checkpoints);
4. writes the final checkpoint and ``model.keras``, then evaluates (a failure
   leaves the run at "evaluate only": rerunning evaluates without training),
   writes ``test_embeddings.npz``, ``results.json`` and ``results.md``.

Ctrl-C stops after the current batch with a checkpoint (:class:`TrainingInterrupted`).
"""

import contextlib
import json
import math
import os
import time

import keras
import numpy as np

from experiments import methods, reporting, rundir, summaries
from experiments.building import build_model, build_optimizer, set_precision
from experiments.callbacks import (
    SOFTMAX_LOSS_METHODS,
    DivergenceGuard,
    InterruptRequest,
    PeriodicEvaluation,
    ScalarLogger,
    StepCheckpoint,
    StepCounter,
    TrainingCollapsed,
    TrainingDiverged,
    TrainingInterrupted,
    TrivialSolutionGuard,
)
from experiments.checkpoints import CheckpointManager
from experiments.runconfig import LENGTH_FIELDS, UsageError, config_differences

__all__ = ["run_training", "epoch_segments", "EvaluationFailed", "TrainingCollapsed", "TrainingDiverged",
           "TrainingInterrupted"]


class EvaluationFailed(RuntimeError):
    """The final evaluation raised; the run is checkpointed at its last step (rerun to evaluate)."""


def epoch_segments(start, total, steps_per_epoch):
    """``(epoch, first_step, num_steps)`` of every epoch that global steps ``[start, total)`` touch."""
    segments, step = [], int(start)
    while step < total:
        epoch = step // steps_per_epoch
        end = min((epoch + 1) * steps_per_epoch, total)
        segments.append((epoch, step, end - step))
        step = end
    return segments


def total_steps(cfg, steps_per_epoch):
    return int(cfg.steps) if cfg.steps is not None else int(cfg.epochs) * steps_per_epoch


def _jax_devices(strategy):
    if strategy != "mirrored":
        return 1
    distribution = keras.distribution.distribution()
    return len(distribution.device_mesh.devices.flatten()) if distribution is not None else 1


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def unknown_loss_arguments(loss, given):
    """Keys of ``given`` that neither the loss class nor its functional form takes."""
    import inspect

    def named(fn):
        params = inspect.signature(fn).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params) and fn is not type(loss).__init__:
            return None  # the functional form takes anything
        return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    allowed = named(type(loss).__init__)
    fn = getattr(loss, "fn", None)
    if fn is not None:
        extra = named(fn)
        if extra is None:
            return []
        allowed |= extra
    return sorted(set(given) - allowed)


def run_training(cfg, train_source, test_source, logdir, seed=0, strategy="default", mixed_precision="none",
                 log_every=10, eval_batch_size=256, nn_queries=8, nn_k=5, tsne_points=1500, restart=False,
                 verbose=1):  # fmt: skip
    """Train ``cfg`` on ``train_source``, evaluate on ``test_source``; resumable.

    ``strategy``: ``"default"``, ``"mirrored"`` or a ``tf.distribute``
    strategy instance. Returns the results dict also written to
    ``<logdir>/results.json``.
    """
    trainer = Trainer(cfg, train_source, test_source, logdir, seed=seed, log_every=log_every,
                      eval_batch_size=eval_batch_size, visuals=(nn_queries, nn_k, tsne_points),
                      verbose=verbose)  # fmt: skip
    trainer.build(strategy, mixed_precision)
    with contextlib.ExitStack() as stack:
        try:
            os.makedirs(logdir, exist_ok=True)
            stack.enter_context(rundir.RunLock(logdir))
        except rundir.RunDirectoryBusy as err:
            raise UsageError(str(err)) from None
        except OSError as err:
            raise UsageError(f"--logdir {logdir} is not usable: {err}") from None
        stack.callback(trainer.writer.close)
        return trainer.run(stack.enter_context(InterruptRequest()), restart)


class Trainer:
    """One run; see the module docstring. :meth:`build` then :meth:`run`."""

    def __init__(self, cfg, train_source, test_source, logdir, seed, log_every, eval_batch_size, visuals, verbose):
        self.cfg, self.train_source, self.test_source, self.logdir = cfg, train_source, test_source, logdir
        self.seed, self.log_every, self.eval_batch_size = int(seed), int(log_every), eval_batch_size
        self.visuals, self.verbose = visuals, verbose
        self.config_dict = reporting.jsonable(cfg.to_dict())
        self.counter = StepCounter()
        self.history = []
        self.writer = summaries.SummaryWriter(logdir)
        self.manager = CheckpointManager(os.path.join(logdir, "checkpoints"))

    # ------------------------------------------------------------------ build

    def build(self, strategy, mixed_precision):
        """Model, plan, optimizer, compile; every failure here is a :class:`UsageError`."""
        from experiments.distribution import GlobalBatchLoss, GlobalBatchMetric, setup_strategy

        cfg = self.cfg
        keras.utils.set_random_seed(self.seed)
        set_precision(mixed_precision)
        tf_strategy = setup_strategy(strategy)
        replicas = tf_strategy.num_replicas_in_sync if tf_strategy is not None else _jax_devices(strategy)
        self.strategy_name = "mirrored" if tf_strategy is not None else strategy
        self.mixed_precision = mixed_precision
        if cfg.batch_size % replicas:
            raise UsageError(f"--strategy {self.strategy_name}: the batch of {cfg.batch_size} does not split "
                             f"evenly over {replicas} devices")  # fmt: skip
        scope = tf_strategy.scope() if tf_strategy is not None else _NullScope()
        with scope:
            try:
                self.model = build_model(cfg, self.train_source, self.seed)
                context = methods.TrainingContext(
                    config=cfg, train_source=self.train_source, model=self.model, seed=self.seed, logdir=self.logdir,
                    summary_writer=self.writer, global_step=lambda: self.counter.step, strategy=tf_strategy,
                )  # fmt: skip
                self.plan = methods.build_plan(cfg.method, context)
                unknown = unknown_loss_arguments(self.plan.loss, cfg.loss_kwargs)
                if unknown:
                    raise UsageError(f"--loss_kwargs: {type(self.plan.loss).__name__} takes no argument(s) {unknown}")
                # A tf.distribute strategy keeps optimizer variables per replica: no gradient-norm variable there.
                self.optimizer = build_optimizer(cfg, self.model, self.plan.steps_per_epoch,
                                                 gradient_norm=tf_strategy is None)  # fmt: skip
            except UsageError:
                raise
            except (ValueError, TypeError, OSError, RuntimeError) as err:
                raise UsageError(f"--method {cfg.method} / --backbone {cfg.backbone}: {err}") from None
            loss, metrics = self.plan.loss, list(self.plan.metrics)
            if tf_strategy is not None:
                loss, metrics = GlobalBatchLoss(loss), [GlobalBatchMetric(m) for m in metrics]
            self.model.compile(optimizer=self.optimizer, loss=loss, metrics=metrics or None,
                               loss_weights=cfg.loss_weight if cfg.loss_weight != 1.0 else None)  # fmt: skip
            self.optimizer.build(self.model.trainable_variables)
        self.total = total_steps(cfg, self.plan.steps_per_epoch)

    # ------------------------------------------------------------------ run

    def _check_resumable(self):
        """Refuse a checkpoint of another run, naming what differs; allow a longer run."""
        path, saved = self.manager.latest_state()
        if saved is None:
            return
        differ = config_differences(saved.get("config", {}), self.config_dict)
        if saved.get("seed") != self.seed:
            differ.append(f"seed (checkpoint {saved.get('seed')}, now {self.seed})")
        other = [d for d in differ if d not in LENGTH_FIELDS]
        if other:
            shown = ", ".join(
                d if "(" in d else f"{d} (checkpoint {saved['config'].get(d)!r}, now {self.config_dict.get(d)!r})"
                for d in other
            )
            raise UsageError(
                f"{self.logdir} holds a checkpoint of a different run ({path}); it differs in {shown}. "
                "Resume with the same settings (only --steps/--epochs may grow), use a new --logdir, or pass --restart"
            )
        if int(saved.get("step", 0)) > self.total:
            raise UsageError(
                f"{self.logdir} is trained to step {saved['step']}, beyond the {self.total} steps asked for; "
                "give at least that many --steps, use a new --logdir, or pass --restart"
            )

    def _snapshot(self):
        return {"config": self.config_dict, "seed": self.seed, "history": self.history,
                "train_seconds": self.train_seconds + (time.time() - self._t_start)}  # fmt: skip

    def _save(self, step):
        return self.manager.save(step, self.model, self.optimizer, self._snapshot(), callbacks=self.plan.callbacks)

    def run(self, interrupt, restart):
        cfg, logdir = self.cfg, self.logdir
        if restart:
            rundir.clear_outputs(logdir)
        self._check_resumable()
        latest, state = self.manager.restore_latest(self.model, self.optimizer, callbacks=self.plan.callbacks)
        state = state or {}
        step0 = int(state.get("step", 0))
        self.counter.step = step0
        self.history = list(state.get("history", []))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        spe = self.plan.steps_per_epoch
        results_file = os.path.join(logdir, "results.json")
        if latest is not None and self.verbose:
            print(f"resumed from {latest} (step {step0})", flush=True)
        if step0 == self.total and os.path.exists(results_file):
            if self.verbose:
                print(f"{logdir} is finished ({self.total} steps); results in {results_file}", flush=True)
            with open(results_file) as f:
                return json.load(f)
        with open(os.path.join(logdir, "run.json"), "w") as f:
            json.dump(self._run_record(), f, indent=1)

        guard = self.guard = DivergenceGuard(self.counter, self.log_every)
        evaluation = PeriodicEvaluation(
            reporting.eval_data(self.test_source, self.eval_batch_size), self.writer, cfg.eval_every, step0,
            self.total, self.history, cfg.resolved_recall_ks(), self.eval_batch_size, self.seed, verbose=self.verbose,
            metric=cfg.eval_metric,
        )  # fmt: skip
        for callback in (guard, evaluation):
            callback.set_model(self.model)
        resumers = [CheckpointManager.epoch_metrics_resumer(latest, step0, spe)] if latest else []
        callbacks = resumers + list(self.plan.callbacks) + [
            self.counter,
            ScalarLogger(self.writer, self.counter, self.log_every, self.total),
            evaluation,
            guard,
            *self._collapse_guard(),
            StepCheckpoint(self._save, self.counter, cfg.checkpoint_every, self.total, guard, interrupt),
        ]
        self._t_start = time.time()
        if step0 == 0 and cfg.eval_every:
            evaluation.evaluate_at(0)
        for epoch, first_step, num_steps in epoch_segments(step0, self.total, spe):
            self._stop_if_interrupted(interrupt, first_step, save=first_step > step0)
            if self.plan.prepare_epoch is not None:
                self.plan.prepare_epoch(epoch)
            data = self.plan.train_batches(first_step, num_steps)
            self.model.fit(data, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=num_steps,
                           callbacks=callbacks, verbose=0, shuffle=False)  # fmt: skip
            if self.verbose:
                print(f"trained to step {self.counter.step}/{self.total}", flush=True)
        if self.counter.step != self.total:
            raise RuntimeError(f"training stopped at step {self.counter.step} of {self.total}")
        if step0 < self.total:
            guard.check(self.total)
            self._save(self.total)  # before the final evaluation: a failure there keeps the training
        self.train_seconds += time.time() - self._t_start
        self._stop_if_interrupted(interrupt, self.total, save=False)
        self._export_model()
        return self._finish(evaluation)

    def _collapse_guard(self):
        """:class:`TrivialSolutionGuard` on the run's first P×K batch (``log P`` for softmax losses);
        none for other batch layouts (triplets, DAMLRRM), whose batches need the epoch's mining first."""
        if self.plan.batch_layout != "pk":
            return []
        x, y = next(iter(self.plan.train_batches(0, 1)))
        trivial = math.log(self.cfg.classes_per_batch) if self.cfg.method in SOFTMAX_LOSS_METHODS else None
        return [TrivialSolutionGuard((np.asarray(x), np.asarray(y)), self.plan.loss, trivial, self.writer,
                                     self.counter, self.log_every)]  # fmt: skip

    def _stop_if_interrupted(self, interrupt, step, save):
        """After a Ctrl-C outside ``fit``: checkpoint ``step`` (unless one exists) and stop."""
        if not interrupt.requested:
            return
        if save:
            self.guard.check(step)
        path = self._save(step) if save else self.manager.latest()
        where = f"checkpoint {path}" if path else "no checkpoint yet"
        raise TrainingInterrupted(f"interrupted at step {step}; {where}")

    def _run_record(self):
        """``run.json``: what ``experiments.evaluate --run`` needs to re-evaluate the run."""
        return reporting.jsonable({
            "config": self.config_dict, "seed": self.seed, "backend": keras.backend.backend(),
            "test_source": self.test_source.describe(), "eval_batch_size": self.eval_batch_size,
            "recall_ks": list(self.cfg.resolved_recall_ks()), "eval_metric": self.cfg.eval_metric,
        })  # fmt: skip

    def _export_model(self):
        """``model.keras``: the embedding model alone (no optimizer or loss), loadable after ``import symm_keras``."""
        export = keras.Model(self.model.inputs, self.model.outputs, name=self.model.name)
        export.save(os.path.join(self.logdir, "model.keras"))

    def _finish(self, evaluation):
        cfg, logdir, total = self.cfg, self.logdir, self.total
        self.history[:] = [h for h in self.history if h["step"] != total]  # an earlier final evaluation
        try:
            result, embeddings, labels = evaluation.evaluate_at(total)
        except Exception as err:
            raise EvaluationFailed(
                f"the final evaluation failed ({type(err).__name__}: {err}); the run is checkpointed at step "
                f"{total}: fix the cause and rerun the same command to evaluate without training"
            ) from err
        # The final checkpoint's history gets the final evaluation too (a later, longer run reports it).
        self.manager.update_state(self.manager.latest(), history=self.history)
        np.savez(os.path.join(logdir, "test_embeddings.npz"), embeddings=embeddings, labels=labels)
        nn_queries, nn_k, tsne_points = self.visuals
        reporting.write_visuals(self.writer, logdir, self.test_source, embeddings, labels, total, nn_queries, nn_k,
                                tsne_points, self.seed)  # fmt: skip
        from experiments.configs import recipes

        metrics = result.as_dict()
        report = recipes.reported_results(cfg, self.history)
        results = {
            "config": self.config_dict,
            "method": cfg.method,
            "dataset": cfg.dataset,
            "seed": self.seed,
            "steps": total,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "backend": keras.backend.backend(),
            "strategy": self.strategy_name,
            "mixed_precision": self.mixed_precision,
            "metrics": metrics,
            "report": report,
            "paper_results": dict(cfg.paper_results),
            "evaluation": reporting.jsonable(result.metadata()),
            "history": self.history,
            "train_seconds": self.train_seconds,
        }
        with open(os.path.join(logdir, "results.json"), "w") as f:
            json.dump(reporting.jsonable(results), f, indent=1)
        reported = report["best_recall@1"] if cfg.reported_result == "best_recall@1" else report["last"]
        table = reporting.results_table(cfg, reported, cfg.resolved_recall_ks())
        with open(os.path.join(logdir, "results.md"), "w") as f:
            f.write(table)
        self.writer.flush()
        if self.verbose:
            print(table, flush=True)
        return results

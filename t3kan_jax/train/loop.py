"""The training loop: `train_and_evaluate(config, workdir)`, resumable, sharded over a mesh."""

import functools
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.experimental import multihost_utils
from ml_collections import config_dict
from tqdm.auto import tqdm

from t3kan_jax import data as data_lib
from t3kan_jax import models
from t3kan_jax.train import checkpoint, metrics, optim
from t3kan_jax.train import sharding as sharding_lib
from t3kan_jax.train import workdir as workdir_lib
from t3kan_jax.train.state import (
    TrainState,
    fresh_opt_state,
    make_init_fn,
    state_shardings,
    with_shardings,
)

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss or gradient norm became NaN or infinite."""


def make_train_step(model, optimizer, schedule, shardings: TrainState, batch_sharding):
    """The jitted update: (state, batch) -> (state, per-step metric sums), state donated."""

    def loss_fn(params, batch):
        logits = model.apply(params, batch["inputs"], mask_BT=batch["input_mask"])
        return metrics.masked_loss(logits, batch)

    def train_step(state: TrainState, batch):
        (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        out = dict(sums, grad_norm=optax.tree.norm(grads), learning_rate=schedule(state.step))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

    step = jax.jit(
        train_step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    return sharding_lib.under_mesh(step, getattr(batch_sharding, "mesh", None))


def make_eval_step(model, param_shardings, batch_sharding):
    """The jitted evaluation of one batch: metric sums."""

    def eval_step(params, batch):
        logits = model.apply(params, batch["inputs"], mask_BT=batch["input_mask"])
        return metrics.token_sums(logits, batch)

    step = jax.jit(eval_step, in_shardings=(param_shardings, batch_sharding))
    return sharding_lib.under_mesh(step, getattr(batch_sharding, "mesh", None))


def evaluate(eval_step, params, split, batch_size: int, pad_id: int, batch_sharding) -> dict:
    """Metric sums over every row of a split."""
    outs = [
        eval_step(params, sharding_lib.shard_batch(b, batch_sharding))
        for b in data_lib.eval_batches(split, batch_size, pad_id)
    ]
    total = {}
    for out in jax.device_get(outs):
        total = metrics.add_sums(total, out)
    return total


class Programs(NamedTuple):
    """The model, optimizer and compiled functions of one (model, optimizer, mesh) setting."""

    model: Any
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    init: Any  # seed -> TrainState, laid out on the mesh
    shardings: TrainState
    target: TrainState  # ShapeDtypeStructs with shardings, to restore checkpoints into
    batch_sharding: Any
    train_step: Any
    eval_step: Any


@functools.lru_cache(maxsize=8)
def build_programs(model_cfg, optim_fields: tuple, seq_len: int, mesh) -> Programs:
    """Builds (once per process for equal arguments, so repeated runs skip recompiling) the
    jitted init, train and eval functions; `optim_fields` holds (name, value) of optim.FIELDS."""
    model = models.build_model(model_cfg)
    optimizer, schedule = optim.make_optimizer(dict(optim_fields))
    init = make_init_fn(model, optimizer, seq_len)
    abstract = jax.eval_shape(init, np.uint32(0))
    shardings = state_shardings(abstract, mesh)
    batch_sharding = sharding_lib.batch_sharding(mesh)
    return Programs(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        init=jax.jit(init, out_shardings=shardings),
        shardings=shardings,
        target=with_shardings(abstract, shardings),
        batch_sharding=batch_sharding,
        train_step=make_train_step(model, optimizer, schedule, shardings, batch_sharding),
        eval_step=make_eval_step(model, shardings.params, batch_sharding),
    )


class _StopSignals:
    """Turns SIGINT / SIGTERM into a request to save and stop.

    One process: the first signal sets the request (a second one acts as usual). Several
    processes: JAX's preemption sync point, so that a SIGTERM to any process stops every process
    at one common step (jax.distributed installs that notifier).
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        self.received = signal.Signals(signum).name
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def check(self, step: int) -> bool:
        """Whether to save and stop after `step` (call once per step, on every process)."""
        if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
            self.received = "SIGTERM"
        return self.received is not None


def _new_loop_state() -> dict:
    """What the loop keeps beside the arrays; checkpointed as JSON so a resume continues exactly."""
    return {
        "step": 0,
        "best_val_loss": None,
        "best_step": None,
        "bad_evals": 0,
        "stop_reason": None,
        "elapsed_s": 0.0,
        # Sums of the train metrics since the last train row.
        "pending": {},
        "pending_steps": 0,
        "pending_grad_norm": 0.0,
    }


def _check_train_fields(tc: config_dict.ConfigDict) -> None:
    for field in ("eval_every", "checkpoint_every", "log_every"):
        if tc[field] < 1:
            raise ValueError(f"train.{field} must be >= 1, got {tc[field]}")
    if tc.patience < 0:
        raise ValueError(f"train.patience must be >= 0 (0 = no early stopping), got {tc.patience}")


class _Run:
    """One session of a run: the pieces the loop, the evaluations and the checks share."""

    def __init__(self, config, workdir: Path):
        self.session_start = time.perf_counter()
        self.config, self.tc, self.workdir = config, config.train, workdir
        self.is_main = jax.process_index() == 0
        self.mesh = sharding_lib.make_mesh(config.mesh)
        sharding_lib.check_batch_size(self.tc.batch_size, "train.batch_size", self.mesh)
        sharding_lib.check_batch_size(self.tc.eval_batch_size, "train.eval_batch_size", self.mesh)
        _check_train_fields(self.tc)
        self.splits = data_lib.make_splits(config.data)
        seq_len = self.splits["train"].inputs.shape[1]
        self.model_cfg = model_cfg = models.ModelConfig.from_config(config.model)
        workdir_lib.check_model_fits_data(model_cfg, config.data, seq_len)
        optim_fields = tuple((k, self.tc[k]) for k in optim.FIELDS)
        self.p = p = build_programs(model_cfg, optim_fields, seq_len, self.mesh)
        self.ckpt = checkpoint.Checkpoints(workdir, self.tc.keep_checkpoints)
        restored = self.ckpt.restore_latest(p.target)
        if restored is None:
            self.state = p.init(np.uint32(config.seed))
            if config.init_from:
                workdir_lib.check_init_from_layout(config.init_from, model_cfg.scan_layers)
                params = checkpoint.load_params(config.init_from, p.target.params)
                opt_state = fresh_opt_state(p.optimizer, params, p.shardings)
                self.state = self.state.replace(params=params, opt_state=opt_state)
            self.loop = _new_loop_state()
        else:
            self.state, self.loop = restored
            self.ckpt.discard_best_after(self.loop["step"])
            log.info("resumed %s at step %d", workdir, self.loop["step"])
        if self.loop["stop_reason"] == "max_steps" and self.loop["step"] < self.tc.steps:
            self.loop["stop_reason"] = None  # train.steps was raised: train on
        self.num_params = models.count_params(self.state.params)
        log.info("model: %s; %d parameters", models.describe(model_cfg), self.num_params)
        self.pad_id = config.data.pad_id
        self.writer = metrics.MetricWriter(workdir, self.loop["step"], enabled=self.is_main)
        self.pending = []  # (step, device metrics) not yet checked for NaN / accumulated
        self.last_lr = None
        self.step = self.loop["step"]
        self.elapsed_before = self.loop["elapsed_s"]

    def flush(self) -> None:
        """Moves pending step metrics to the host, stopping at the first non-finite one."""
        for step, out in zip(
            [s for s, _ in self.pending], jax.device_get([o for _, o in self.pending]), strict=True
        ):
            loss = float(out["loss_sum"]) / max(float(out["tokens"]), 1.0)
            for name, value in (("loss", loss), ("gradient norm", float(out["grad_norm"]))):
                if not math.isfinite(value):
                    self.pending = []
                    kept = self.ckpt.latest.latest_step()
                    raise NonFiniteLossError(
                        f"training {name} is {value} at step {step}: stopped. "
                        + (
                            f"The last good checkpoint (step {kept}) is kept in "
                            f"{self.workdir / 'checkpoints'}."
                            if kept is not None
                            else "No checkpoint had been saved yet."
                        )
                        + " Lower train.learning_rate or set train.grad_clip."
                    )
            sums = {k: v for k, v in out.items() if k not in ("grad_norm", "learning_rate")}
            self.loop["pending"] = metrics.add_sums(self.loop["pending"], sums)
            self.loop["pending_steps"] += 1
            self.loop["pending_grad_norm"] += float(out["grad_norm"])
            self.last_lr = float(out["learning_rate"])
        self.pending = []

    def train_row(self, step: int, tokens_per_second: float) -> dict:
        row = {"step": step, "split": "train", **metrics.ratios(self.loop["pending"])}
        row["grad_norm"] = self.loop["pending_grad_norm"] / self.loop["pending_steps"]
        row["learning_rate"] = self.last_lr
        row["tokens_per_second"] = tokens_per_second
        self.loop.update(pending={}, pending_steps=0, pending_grad_norm=0.0)
        return row

    def validate(self, step: int) -> dict:
        """Evaluates on val; updates early stopping and the best parameters."""
        sums = evaluate(
            self.p.eval_step,
            self.state.params,
            self.splits["val"],
            self.tc.eval_batch_size,
            self.pad_id,
            self.p.batch_sharding,
        )
        row = {"step": step, "split": "val", **metrics.ratios(sums)}
        best = self.loop["best_val_loss"]
        if best is None or row["loss"] < best - self.tc.min_delta:
            self.loop.update(best_val_loss=row["loss"], best_step=step, bad_evals=0)
            self.ckpt.save_best(step, self.state.params, row)
        else:
            self.loop["bad_evals"] += 1
            if self.tc.patience and self.loop["bad_evals"] >= self.tc.patience:
                self.loop["stop_reason"] = "early_stop"
        return row

    def elapsed(self) -> float:
        """Training wall time of the run so far, over all its sessions."""
        return self.elapsed_before + time.perf_counter() - self.session_start

    def save(self) -> None:
        """Checks the pending metrics, then saves the state at the current step (async)."""
        self.flush()
        self.loop.update(step=self.step, elapsed_s=self.elapsed())
        self.ckpt.save(self.state, self.loop)

    def train(self, stop: _StopSignals) -> None:
        """Trains until train.steps, early stopping, or a stop signal."""
        tc, loop = self.tc, self.loop
        start, tokens = time.perf_counter(), 0
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.is_main, desc="train")
        while loop["stop_reason"] is None and self.step < tc.steps and stop.received is None:
            batch = data_lib.train_batch(
                self.splits["train"], tc.batch_size, self.config.seed, self.step, self.pad_id
            )
            self.state, out = self.p.train_step(
                self.state, sharding_lib.shard_batch(batch, self.p.batch_sharding)
            )
            self.step += 1
            step = self.step
            tokens += batch["inputs"].size
            self.pending.append((step, out))
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                self.flush()
                now = time.perf_counter()
                row = self.train_row(step, tokens / (now - start))
                start, tokens = now, 0
                self.writer.write(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['learning_rate']:.2e}")
            if step % tc.eval_every == 0 or step == tc.steps:
                self.flush()
                eval_start = time.perf_counter()
                self.writer.write(self.validate(step))
                start += time.perf_counter() - eval_start  # tokens/s counts training time only
            if step == tc.steps and loop["stop_reason"] is None:
                loop["stop_reason"] = "max_steps"
            if stop.check(step) or step % tc.checkpoint_every == 0 or loop["stop_reason"]:
                self.save()
        bar.close()

    def test(self) -> dict:
        """Evaluates the best parameters (else the last ones) on the test split."""
        params = self.ckpt.restore_best(self.p.target.params)
        if params is None:
            params = self.state.params
        sums = evaluate(
            self.p.eval_step,
            params,
            self.splits["test"],
            self.tc.eval_batch_size,
            self.pad_id,
            self.p.batch_sharding,
        )
        row = {"step": self.step, "split": "test", **metrics.ratios(sums)}
        row["checkpoint_step"] = self.loop["best_step"]
        self.writer.write(row)
        return row


def train_and_evaluate(config: config_dict.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the run in `workdir`, tests its best parameters, returns the results.

    A finished workdir is not trained again: its results are returned. On SIGINT / SIGTERM the
    state is saved and {"status": "interrupted", ...} returned; rerunning resumes.
    """
    workdir = Path(workdir)
    workdir_lib.prepare(config, workdir)
    results = workdir_lib.read_results(workdir)
    if results is not None and workdir_lib.is_finished(results, config):
        log.info("%s is finished; its results:\n%s", workdir, workdir_lib.summary(results))
        return results
    run = _Run(config, workdir)
    try:
        with _StopSignals() as stop:
            run.train(stop)
        if stop.received:
            run.save()
            run.ckpt.wait()
            log.warning(
                "%s: saved step %d to %s; rerun the same command to resume",
                stop.received,
                run.step,
                workdir,
            )
            return {"status": "interrupted", "signal": stop.received, "step": run.step}
        test_row = run.test()
        results = {
            "status": "finished",
            "model": models.model_name(run.model_cfg),
            "stop_reason": run.loop["stop_reason"],
            "step": run.step,
            "best_step": run.loop["best_step"],
            "best_val_loss": run.loop["best_val_loss"],
            "test": {k: test_row[k] for k in metrics.RATIOS},
            "num_params": run.num_params,
            "wall_time_s": run.elapsed(),
            "devices": run.mesh.size,
        }
        if run.is_main:
            metrics.plot_curves(
                metrics.read_rows(workdir / "metrics.jsonl"), workdir / "curves.png"
            )
            (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        log.info("%s finished:\n%s", workdir, workdir_lib.summary(results))
        return results
    finally:
        run.ckpt.wait()
        run.ckpt.close()
        run.writer.close()

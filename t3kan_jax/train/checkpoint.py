"""Checkpoints through Orbax (the only module that imports it).

DIR/checkpoints holds the last `keep` full train states (params, optimizer state and the loop's
JSON state), saved asynchronously; DIR/best holds the parameters of the best evaluation so far.
"""

import logging
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from t3kan_jax.train.state import TrainState

log = logging.getLogger(__name__)


def _manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Checkpoints:
    """The latest-k train states and the best parameters of one workdir."""

    def __init__(self, workdir: str | os.PathLike, keep: int):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        self.workdir = Path(workdir)
        self.latest = _manager(self.workdir / "checkpoints", keep)
        self.best = _manager(self.workdir / "best", 1)

    def save(self, state: TrainState, loop_state: dict) -> None:
        """Starts an async save of the state at its step (the arrays are copied before return)."""
        step = int(loop_state["step"])
        if step in self.latest.all_steps():
            return
        self.latest.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params),
                opt_state=ocp.args.StandardSave(state.opt_state),
                loop=ocp.args.JsonSave(loop_state),
            ),
        )

    def save_best(self, step: int, params, info: dict) -> None:
        """Replaces the best parameters with these (async)."""
        self.best.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), info=ocp.args.JsonSave(info)
            ),
        )

    def restore_latest(self, target: TrainState) -> tuple[TrainState, dict] | None:
        """The newest readable state, falling back past unreadable ones (moved aside), or None.

        `target` holds ShapeDtypeStructs with the shardings to restore into.
        """
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                restored = self.latest.restore(
                    step,
                    args=ocp.args.Composite(
                        params=ocp.args.StandardRestore(target.params),
                        opt_state=ocp.args.StandardRestore(target.opt_state),
                        loop=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as e:
                self._set_aside(step, e)
                continue
            loop_state = dict(restored["loop"])
            state = TrainState(
                step=jax.device_put(np.int32(loop_state["step"]), target.step.sharding),
                params=restored["params"],
                opt_state=restored["opt_state"],
            )
            return state, loop_state
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        """Moves an unreadable checkpoint to DIR/corrupt_checkpoints and says so."""
        src = Path(self.latest.directory) / str(step)
        dst = self.workdir / "corrupt_checkpoints" / f"{step}"
        if jax.process_index() == 0:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst)
            shutil.move(src, dst)
        msg = (
            f"checkpoint at step {step} in {src} is unreadable ({type(error).__name__}: "
            f"{str(error)[:300]}); moved it to {dst} and falling back to the previous one"
        )
        log.warning(msg)
        print(f"WARNING: {msg}", flush=True)
        self.latest.reload()

    def restore_best(self, target_params):
        """The best parameters saved so far, or None if there are none."""
        step = self.best.latest_step()
        if step is None:
            return None
        args = ocp.args.Composite(params=ocp.args.StandardRestore(target_params))
        return self.best.restore(step, args=args)["params"]

    def discard_best_after(self, step: int) -> None:
        """Drops best parameters newer than a restored state (they will be recomputed)."""
        for s in self.best.all_steps():
            if s > step:
                self.best.delete(s)

    def wait(self) -> None:
        """Blocks until pending async saves are on disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def load_params(path: str | os.PathLike, target_params):
    """Parameters of another run: its best ones, else its latest state's (for config.init_from).

    `path` is a workdir, or its checkpoints/ or best/ folder.
    """
    path = Path(path).absolute()
    candidates = (
        [path] if path.name in ("best", "checkpoints") else [path / "best", path / "checkpoints"]
    )
    for directory in candidates:
        if not directory.is_dir():
            continue
        manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(read_only=True)
        )
        step = manager.latest_step()
        if step is not None:
            args = ocp.args.Composite(params=ocp.args.StandardRestore(target_params))
            params = manager.restore(step, args=args)["params"]
            manager.close()
            return params
        manager.close()
    raise ValueError(f"config.init_from={str(path)!r}: no checkpoint found under it")

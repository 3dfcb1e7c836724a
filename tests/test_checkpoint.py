"""Tests of t3kan_jax.train.checkpoint: keep-k, best, fallback past corrupt ones, init_from."""

import logging

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from ml_collections import config_dict

from t3kan_jax.train import checkpoint, sharding
from t3kan_jax.train.state import TrainState, state_shardings, with_shardings

OPTIMIZER = optax.adam(1e-3)


def _state(value: float) -> TrainState:
    params = {"params": {"w": jnp.full((4, 2), value), "b": jnp.full((2,), value)}}
    return TrainState(step=jnp.int32(0), params=params, opt_state=OPTIMIZER.init(params))


@pytest.fixture(scope="module")
def target():
    mesh = sharding.make_mesh(config_dict.ConfigDict({"data": 1, "fsdp": 1}))
    abstract = jax.eval_shape(lambda: _state(0.0))
    return with_shardings(abstract, state_shardings(abstract, mesh))


def _save(ckpt, step, value):
    ckpt.save(_state(value), {"step": step, "note": f"value {value}"})


def test_save_restore_keeps_last_k(tmp_path, target):
    ckpt = checkpoint.Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        _save(ckpt, step, float(step))
    ckpt.wait()
    assert ckpt.latest.all_steps() == [2, 3]
    state, loop = ckpt.restore_latest(target)
    assert loop == {"step": 3, "note": "value 3.0"}
    assert int(state.step) == 3
    chex.assert_trees_all_close(state.params, _state(3.0).params)
    chex.assert_trees_all_close(state.opt_state, _state(3.0).opt_state)
    ckpt.close()


def _corrupt(directory):
    """Truncates every data file of a saved checkpoint (as a crash mid-copy would)."""
    files = [p for p in directory.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def test_corrupt_latest_falls_back_to_previous_and_says_so(tmp_path, target, caplog):
    ckpt = checkpoint.Checkpoints(tmp_path, keep=3)
    _save(ckpt, 4, 4.0)
    _save(ckpt, 8, 8.0)
    ckpt.wait()
    _corrupt(tmp_path / "checkpoints" / "8")
    with caplog.at_level(logging.WARNING):
        state, loop = ckpt.restore_latest(target)
    assert loop["step"] == 4
    chex.assert_trees_all_close(state.params, _state(4.0).params)
    assert "step 8" in caplog.text and "falling back" in caplog.text
    assert (tmp_path / "corrupt_checkpoints" / "8").is_dir()
    assert ckpt.latest.all_steps() == [4]
    _save(ckpt, 8, 9.0)  # the step can be saved again after the fallback
    ckpt.wait()
    assert ckpt.restore_latest(target)[1]["step"] == 8
    ckpt.close()


def test_no_readable_checkpoint_gives_none(tmp_path, target):
    ckpt = checkpoint.Checkpoints(tmp_path, keep=2)
    assert ckpt.restore_latest(target) is None
    _save(ckpt, 1, 1.0)
    ckpt.wait()
    _corrupt(tmp_path / "checkpoints" / "1")
    assert ckpt.restore_latest(target) is None
    ckpt.close()


def test_best_is_replaced_and_discarded_after_a_restored_step(tmp_path, target):
    ckpt = checkpoint.Checkpoints(tmp_path, keep=2)
    assert ckpt.restore_best(target.params) is None
    ckpt.save_best(2, _state(2.0).params, {"loss": 2.0})
    ckpt.save_best(5, _state(5.0).params, {"loss": 1.0})
    ckpt.wait()
    chex.assert_trees_all_close(ckpt.restore_best(target.params), _state(5.0).params)
    ckpt.discard_best_after(3)
    assert ckpt.restore_best(target.params) is None
    ckpt.close()


def test_async_save_is_not_changed_by_a_later_donating_update(tmp_path, target):
    ckpt = checkpoint.Checkpoints(tmp_path, keep=1)
    state = jax.device_put(_state(1.0), jax.tree.map(lambda t: t.sharding, target))
    ckpt.save(state, {"step": 1})
    bump = jax.jit(lambda s: jax.tree.map(lambda x: x + 100, s), donate_argnums=0)
    saved = state
    for _ in range(3):
        state = bump(state)
    assert saved.params["params"]["w"].is_deleted()  # the buffers were donated
    ckpt.wait()
    restored, _ = ckpt.restore_latest(target)
    chex.assert_trees_all_close(restored.params, _state(1.0).params)
    ckpt.close()


def test_load_params_prefers_best_then_latest(tmp_path, target):
    ckpt = checkpoint.Checkpoints(tmp_path / "run", keep=1)
    _save(ckpt, 3, 3.0)
    ckpt.wait()
    loaded = checkpoint.load_params(tmp_path / "run", target.params)
    chex.assert_trees_all_close(loaded, _state(3.0).params)
    ckpt.save_best(2, _state(2.0).params, {"loss": 0.5})
    ckpt.wait()
    chex.assert_trees_all_close(
        checkpoint.load_params(tmp_path / "run", target.params), _state(2.0).params
    )
    chex.assert_trees_all_close(
        checkpoint.load_params(tmp_path / "run" / "checkpoints", target.params),
        _state(3.0).params,
    )
    ckpt.close()
    with pytest.raises(ValueError, match=r"config\.init_from"):
        checkpoint.load_params(tmp_path / "empty", target.params)

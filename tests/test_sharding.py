"""Tests of t3kan_jax.train.sharding: the FSDP rule, the mesh, and a sharded step's parity."""

import dataclasses

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ml_collections import config_dict

from configs import base
from t3kan_jax import data, models
from t3kan_jax.train import loop, optim, sharding


def _mesh(data_size, fsdp):
    return sharding.make_mesh(config_dict.ConfigDict({"data": data_size, "fsdp": fsdp}))


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((8, 6), jax.P("fsdp", None)),
        ((6, 8), jax.P(None, "fsdp")),
        ((4, 4), jax.P("fsdp", None)),  # ties: the first of the largest
        ((3, 5), jax.P()),
        ((), jax.P()),
        ((2, 3, 10), jax.P(None, None, "fsdp")),
    ],
)
def test_param_spec_shards_largest_divisible_dim(shape, spec):
    assert sharding.param_spec(shape, 2) == spec
    assert sharding.param_spec(shape, 1) == jax.P()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 12), max_size=4), st.sampled_from([2, 3, 4]))
def test_param_spec_property(shape, fsdp):
    spec = tuple(sharding.param_spec(tuple(shape), fsdp))
    divisible = [d for d in shape if d % fsdp == 0]
    if not divisible:
        assert spec == ()
    else:
        (axis,) = [i for i, name in enumerate(spec) if name == "fsdp"]
        assert shape[axis] == max(divisible)


def test_make_mesh_sizes_and_errors():
    mesh = _mesh(-1, 2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
    assert _mesh(2, 1).size == 2
    with pytest.raises(ValueError, match=r"mesh\.fsdp"):
        _mesh(-1, 3)
    with pytest.raises(ValueError, match=r"mesh\.data"):
        _mesh(16, 1)


def test_batch_size_must_divide_over_devices():
    mesh = _mesh(4, 2)
    sharding.check_batch_size(16, "train.batch_size", mesh)
    with pytest.raises(ValueError, match=r"train.batch_size=12 .* 8 devices"):
        sharding.check_batch_size(12, "train.batch_size", mesh)


def _tiny_setup(arch):
    config = base.get_config()
    config.model.update(arch=arch, width=16, depth=1, num_heads=2)
    config.data.samples = 64
    # Adam's first update is about lr * sign(gradient): a small lr keeps the float32 rounding of
    # near-zero gradients (summed in another order over 8 devices) below the 1e-6 tolerance.
    config.train.update(steps=4, warmup_steps=0, learning_rate=1e-3)
    model_cfg = models.ModelConfig.from_config(config.model)
    optim_fields = tuple((k, config.train[k]) for k in optim.FIELDS)
    split = data.make_splits(config.data)["train"]
    batch = data.train_batch(split, 16, seed=0, step=0, pad_id=0)
    return model_cfg, optim_fields, batch


@pytest.mark.parametrize(
    "arch", ["transformer", pytest.param("ttt", marks=pytest.mark.slow)]
)  # T3Lin compiles ~3x slower on CPU: in the slow set
def test_fsdp_and_data_parallel_step_equals_single_device_step(arch):
    model_cfg, optim_fields, batch = _tiny_setup(arch)
    results = []
    for mesh in (_mesh(1, 1), _mesh(4, 2)):
        programs = loop.build_programs(model_cfg, optim_fields, batch["inputs"].shape[1], mesh)
        state = programs.init(np.uint32(0))
        sharded = sharding.shard_batch(batch, programs.batch_sharding)
        state, out = programs.train_step(state, sharded)
        results.append(jax.device_get((state.params, state.opt_state, out)))
    specs = [s.spec for s in jax.tree.leaves(programs.shardings.params)]
    assert any("fsdp" in spec for spec in specs)  # the 8-device run really shards parameters
    assert len(sharded["inputs"].sharding.device_set) == 8
    chex.assert_trees_all_close(results[0], results[1], rtol=1e-6, atol=1e-6)


def test_step_with_the_fused_kernel_shard_maps_it_and_equals_single_device_step():
    # ttt_impl="pallas" runs the XLA scan on CPU, but inside the same shard_map over the batch
    # that carries the kernel on GPUs: the loop traces its steps under `jax.set_mesh`.
    model_cfg, optim_fields, batch = _tiny_setup("ttt")
    model_cfg = dataclasses.replace(model_cfg, width=32, mini_batch_size=16, ttt_impl="pallas")
    results = []
    for mesh in (_mesh(1, 1), _mesh(4, 2)):
        programs = loop.build_programs(model_cfg, optim_fields, batch["inputs"].shape[1], mesh)
        state = programs.init(np.uint32(0))
        sharded = sharding.shard_batch(batch, programs.batch_sharding)
        with jax.set_mesh(mesh):
            jaxpr = str(jax.make_jaxpr(programs.model.apply)(state.params, sharded["inputs"]))
        assert ("shard_map" in jaxpr) == (mesh.size > 1)
        metrics = programs.eval_step(state.params, sharded)
        state, out = programs.train_step(state, sharded)
        results.append(jax.device_get((state.params, out, metrics)))
    # As above, plus the inner loop's float32 rounding on per-device shapes (test_layer.py):
    # Adam moves near-zero gradients by ~lr either way, so a few parameters differ by ~1e-6.
    chex.assert_trees_all_close(results[0], results[1], rtol=1e-5, atol=5e-6)

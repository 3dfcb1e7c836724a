"""The train state (step, parameters, optimizer state), created sharded on the mesh."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

from t3kan_jax.train import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
    """Everything the train step updates; `step` counts the updates applied so far."""

    step: jax.Array
    params: Any
    opt_state: Any


def state_shardings(abstract: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
    """FSDP shardings for the params and optimizer state; the step counter is replicated."""
    return TrainState(
        step=NamedSharding(mesh, jax.P()),
        params=sharding_lib.tree_shardings(abstract.params, mesh),
        opt_state=sharding_lib.tree_shardings(abstract.opt_state, mesh),
    )


def with_shardings(abstract, shardings):
    """ShapeDtypeStructs carrying the shardings, the target a checkpoint is restored into."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def make_init_fn(model, optimizer: optax.GradientTransformation, seq_len: int):
    """A function of the seed that builds a fresh TrainState (jit it with out_shardings)."""

    def init(seed: jax.Array) -> TrainState:
        params = model.init(jax.random.key(seed), jnp.zeros((1, seq_len), jnp.int32))
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params)
        )

    return init


def fresh_opt_state(optimizer: optax.GradientTransformation, params, shardings: TrainState):
    """Optimizer state for given params (used when only the params come from another run)."""
    return jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)

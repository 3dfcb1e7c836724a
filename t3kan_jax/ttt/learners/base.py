"""Inner learners of a TTT layer: a bundle of pure per-token functions, and their registry.

A learner is the TTT paper's inner model `f(x; W) = x + LN(f_res(x; W))` with its loss (Sun et al.
2024, §2.1 and §2.3). `apply` is `f_res` for one token and is all the primal form needs; the dual
form also needs `DualForm`: `f_res` written as dense layers that are linear in their weights given
their input, `z_l = φ_l(z_{l-1}) w_l + b_l` with `z_0 = φ_0(x)`, and feature maps `φ_l` that do
not depend on the weights the inner loop updates.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Dense = tuple[tuple[jax.Array, jax.Array], ...]

LN_EPS = 1e-6


def layer_norm(params: Params, z_O: jax.Array) -> jax.Array:
    """Per-head LayerNorm with the learner's `ln_scale`, `ln_bias`; biased variance, eps 1e-6."""
    mu = jnp.mean(z_O, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(z_O - mu), axis=-1, keepdims=True)
    return (z_O - mu) * jax.lax.rsqrt(var + LN_EPS) * params["ln_scale"] + params["ln_bias"]


def reconstruction_loss(params: Params, z_O: jax.Array, k_F: jax.Array, v_F: jax.Array):
    """`ℓ = ½‖LN(f_res(k)) − (v − k)‖²` summed over d (TTT paper §2.3, §2.7)."""
    return 0.5 * jnp.sum(jnp.square(layer_norm(params, z_O) - (v_F - k_F)))


def residual_readout(params: Params, z_O: jax.Array, q_F: jax.Array) -> jax.Array:
    """`f(q; W) = q + LN(f_res(q; W))` (TTT paper §2.7, "LN and residual")."""
    return q_F + layer_norm(params, z_O)


@dataclasses.dataclass(frozen=True)
class DualForm:
    """`f_res` as dense layers `z_l = φ_l(z_{l-1}) w_l + b_l`, each linear in `(w_l, b_l)`.

    features: per-token `φ_l(params, h) -> x_l`; `φ_0` acts on the token, `φ_l` (l >= 1) on the
      previous pre-activation. They may read only the entries the inner loop keeps fixed (the others
      arrive as `jax.ShapeDtypeStruct`s: their shapes are readable, their values are not).
    to_dense: `params -> ((w_0 [I_0, O_0], b_0 [O_0]), ...)`, one pair per feature map.
    from_dense: `(params, dense) -> params` with the updated entries rebuilt from `dense`.
    """

    features: tuple[Callable[[Params, jax.Array], jax.Array], ...]
    to_dense: Callable[[Params], Dense]
    from_dense: Callable[[Params, Dense], Params]


@dataclasses.dataclass(frozen=True)
class Learner:
    """A registered inner learner; every function acts on one token (the inner loop vmaps them).

    init: `(key, width, **options) -> params`, a dict of arrays for one head.
    apply: `f_res(params, x_F) -> z_O`, before the LayerNorm.
    inner_keys: the params the inner loop updates; the rest (LN scale/bias, knots) it keeps.
    dual: the layer decomposition for `form="dual"`, or None for a primal-only learner.
    loss: per-token self-supervised loss `(params, z_O, k_F, v_F) -> scalar`.
    readout: per-token output `(params, z_O, q_F) -> out_F`.
    default_base_lr: the TTT layer's `base_lr` when its config leaves it None.
    """

    init: Callable[..., Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    inner_keys: tuple[str, ...]
    dual: DualForm | None = None
    loss: Callable[..., jax.Array] = reconstruction_loss
    readout: Callable[..., jax.Array] = residual_readout
    default_base_lr: float = 1.0

    def split(self, params: Params) -> tuple[Params, Params]:
        """`(inner, fixed)`: the entries the inner loop updates and those it keeps."""
        missing = [k for k in self.inner_keys if k not in params]
        if missing:
            raise ValueError(
                f"params lack the inner entries {missing}; got keys {sorted(params)}, "
                f"the learner updates {list(self.inner_keys)}"
            )
        inner = {k: params[k] for k in self.inner_keys}
        fixed = {k: v for k, v in params.items() if k not in inner}
        return inner, fixed


_REGISTRY: dict[str, Learner] = {}


def register_learner(name: str, learner: Learner, *, overwrite: bool = False) -> Learner:
    """Makes `learner` available as `inner_loop(name, ...)` and `TTTConfig(inner=name)`."""
    if not isinstance(learner, Learner):
        raise ValueError(f"register_learner({name!r}): expected a Learner, got {type(learner)}")
    if name in _REGISTRY and _REGISTRY[name] is not learner and not overwrite:
        raise ValueError(f"inner learner {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = learner
    return learner


def get_learner(name: str) -> Learner:
    """The learner registered under `name`; ValueError listing the registered names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown inner learner kind={name!r}; registered: {registered_learners()}"
        )
    return _REGISTRY[name]


def registered_learners() -> tuple[str, ...]:
    """Names of the registered learners, sorted."""
    return tuple(sorted(_REGISTRY))

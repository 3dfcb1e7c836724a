"""The TTT layer (Sun et al. 2024, §2.7; the official code's "Mamba backbone" variant), Flax Linen.

x ─ Q/K projection (shared) ─ causal convs (separate for Q and K) ─ RoPE along T ─┐
  ─ V projection ───────────────────────────────────────────────────────────────── inner loop
  ─ lr gate `base_lr · sigmoid(θ_h·x + c_h) / d` per head and token ──────────────┘ per (B, H)
→ LayerNorm → ⊙ gelu(x W_g) → W_o.

Padding (`mask_BT`, 1 = real token, right padding): padded tokens get lr 0, so they never change
the inner state. Real outputs do not depend on later tokens anyway (everything is causal), and the
zero lr also keeps the state after the last real token's mini-batch free of padding.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from t3kan_jax.ttt import decode as ttt_decode
from t3kan_jax.ttt import pallas_linear
from t3kan_jax.ttt.conv import DepthwiseCausalConv
from t3kan_jax.ttt.decode import conv_after_window
from t3kan_jax.ttt.inner_loop import (
    DEFAULT_UNROLL,
    FORMS,
    IMPLS,
    default_token_scale,
    inner_loop,
    requests_kernel,
)
from t3kan_jax.ttt.learners import get_learner
from t3kan_jax.ttt.rope import apply_rope

DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class TTTConfig:
    """TTT layer hyper-parameters.

    width, num_heads: model width D and heads H (head dim d = D / H, even for RoPE).
    inner: registered inner learner ("linear", "mlp", "kan", ...).
    mini_batch_size: inner mini-batch size b. form: "dual" or "primal" (same result).
    base_lr: inner base learning rate; None = the learner's default (1.0 linear, 0.1 mlp/kan).
    conv_width: causal depthwise conv width on Q and K (0 = none). share_qk: Q and K from one
      projection (then the separate convs make them differ; needs conv_width >= 1).
    rope: rotate Q and K by position (RoPE, base rope_theta); False = no rotation, so inner
      keys address by content alone (associative recall).
    qk_norm: RMS-normalise Q and K per head and token (parameter-free), so |k|^2 = d and the
      lr `base_lr * sigmoid / d` writes an O(1) fraction of each value (as the L2-normalised keys
      of DeltaNet and LaCT); False = the official TTT layer.
    kan_*: B-spline grid of the KAN learner (range: see docs/ttt.md).
    remat_every: checkpoint the inner loop every this many mini-batches (0 = off).
    unroll: inner scan steps per loop iteration. dtype: compute dtype of the projections; the
      inner loop always runs in float32.
    impl: inner loop implementation, "xla", "pallas" (fused GPU kernels: inner "linear", form
      "dual", remat_every 0, head dim and mini_batch_size powers of 2 >= 16) or "auto" (see
      `inner_loop`).
    """

    width: int
    num_heads: int
    inner: str = "linear"
    mini_batch_size: int = 16
    base_lr: float | None = None
    form: str = "dual"
    conv_width: int = 4
    share_qk: bool = True
    rope_theta: float = 10000.0
    rope: bool = True
    qk_norm: bool = False
    kan_grid_size: int = 5
    kan_degree: int = 3
    kan_grid_min: float = -3.0
    kan_grid_max: float = 3.0
    remat_every: int = 0
    unroll: int = DEFAULT_UNROLL
    dtype: str = "float32"
    impl: str = "xla"

    def __post_init__(self):
        get_learner(self.inner)
        for name, allowed in (("form", FORMS), ("dtype", DTYPES), ("impl", IMPLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TTTConfig.{name}={getattr(self, name)!r}: allowed values are {allowed}"
                )
        for name, low in (
            ("width", 1),
            ("num_heads", 1),
            ("mini_batch_size", 1),
            ("conv_width", 0),
            ("kan_grid_size", 1),
            ("kan_degree", 0),
            ("remat_every", 0),
            ("unroll", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TTTConfig.{name}={value!r}: must be an int >= {low}")
        if self.width % self.num_heads or (self.width // self.num_heads) % 2:
            raise ValueError(
                f"TTTConfig.width={self.width}, num_heads={self.num_heads}: the head dim "
                "width / num_heads must be an even integer (RoPE)"
            )
        if self.base_lr is not None and not self.base_lr > 0:
            raise ValueError(f"TTTConfig.base_lr={self.base_lr!r}: must be None or > 0")
        for name in ("rope", "qk_norm", "share_qk"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"TTTConfig.{name}={getattr(self, name)!r}: allowed values are True, False"
                )
        if not self.rope_theta > 0:
            raise ValueError(f"TTTConfig.rope_theta={self.rope_theta!r}: must be > 0")
        if not self.kan_grid_min < self.kan_grid_max:
            raise ValueError(
                f"TTTConfig.kan_grid_min={self.kan_grid_min} must be < "
                f"kan_grid_max={self.kan_grid_max}"
            )
        if self.share_qk and not self.conv_width:
            raise ValueError(
                "TTTConfig.share_qk=True needs conv_width >= 1 (without the convs Q == K)"
            )
        if self.impl == "pallas" and not self.fits_kernel:
            raise ValueError(
                f"TTTConfig.impl='pallas' needs inner 'linear', form 'dual', remat_every 0 and the "
                f"head dim and mini_batch_size powers of 2 >= {pallas_linear.MIN_TILE}; got inner="
                f"{self.inner!r}, form={self.form!r}, remat_every={self.remat_every}, head dim "
                f"{self.head_dim}, mini_batch_size={self.mini_batch_size}"
            )

    @property
    def fits_kernel(self) -> bool:
        """Whether the fused kernels can run this layer's inner loop (`pallas_linear.applies`)."""
        fused = (self.form, self.remat_every, self.head_dim, self.mini_batch_size)
        return pallas_linear.applies(get_learner(self.inner), *fused)

    @property
    def head_dim(self) -> int:
        """Head dim d."""
        return self.width // self.num_heads

    @property
    def inner_base_lr(self) -> float:
        """`base_lr`, or the learner's default when it is None."""
        return get_learner(self.inner).default_base_lr if self.base_lr is None else self.base_lr

    def learner_options(self) -> dict:
        """Keyword options for the learner's `init`."""
        if self.inner != "kan":
            return {}
        grid_range = (self.kan_grid_min, self.kan_grid_max)
        return {
            "grid_size": self.kan_grid_size,
            "degree": self.kan_degree,
            "grid_range": grid_range,
        }


def rms_normalize(a_BTHF: jax.Array, eps: float = 1e-6) -> jax.Array:
    """`a / rms(a)` over the head dim: |a|^2 = d per head and token."""
    return a_BTHF * jax.lax.rsqrt(jnp.mean(jnp.square(a_BTHF), axis=-1, keepdims=True) + eps)


class TTTLayer(nn.Module):
    """TTT layer: `__call__(x_BTD, mask_BT=None) -> y_BTD` (same dtype as `x_BTD`).

    Decoding: `prefill=True` also returns the cache after the tokens (which start at position 0);
    `cache=..., position=p` runs one token `x_B1D` at position p: `(y, cache)` either way. The cache
    has a constant size: the conv windows and the inner `DecodeState` (t3kan_jax/ttt/decode.py).
    """

    cfg: TTTConfig

    @nn.compact
    def __call__(self, x_BTD, mask_BT=None, *, cache=None, position=None, prefill=False):
        cfg = self.cfg
        b, t, d = x_BTD.shape
        if d != cfg.width:
            raise ValueError(f"TTTLayer: input width {d} != TTTConfig.width={cfg.width}")
        if mask_BT is not None and jnp.shape(mask_BT) != (b, t):
            raise ValueError(f"TTTLayer: mask_BT must be {(b, t)}, got {jnp.shape(mask_BT)}")
        if cache is not None and (t != 1 or position is None):
            raise ValueError(f"TTTLayer: a decode step takes one token and its position, got T={t}")
        decoding, new_cache = prefill or cache is not None, {}
        h, f = cfg.num_heads, cfg.head_dim
        dtype = jnp.dtype(cfg.dtype)
        dense = functools.partial(nn.Dense, d, use_bias=False, dtype=dtype)
        x = x_BTD.astype(dtype)
        if cfg.share_qk:
            q = k = dense(name="wqk")(x)
        else:
            q, k = dense(name="wq")(x), dense(name="wk")(x)
        if cfg.conv_width and decoding:

            def conv(name, a):
                window = None if cache is None else cache[name]
                out, new_cache[name] = conv_after_window(
                    self._conv(name), a, window, cfg.conv_width
                )
                return out

            q, k = conv("conv_q", q), conv("conv_k", k)
        elif cfg.conv_width:
            q, k = self._conv("conv_q")(q), self._conv("conv_k")(k)
        v = dense(name="wv")(x)

        def heads(a):
            return a.astype(jnp.float32).reshape(b, t, h, f)

        q_BTHF, k_BTHF, v_BTHF = heads(q), heads(k), heads(v)
        if cfg.rope:
            positions_T = jnp.arange(t) if cache is None else position + jnp.arange(t)
            q_BTHF = apply_rope(q_BTHF, positions_T, cfg.rope_theta)
            k_BTHF = apply_rope(k_BTHF, positions_T, cfg.rope_theta)
        if cfg.qk_norm:
            q_BTHF, k_BTHF = rms_normalize(q_BTHF), rms_normalize(k_BTHF)

        # Learnable inner learning rate per head and token (TTT paper §2.7).
        gate = nn.Dense(h, kernel_init=nn.initializers.normal(0.02), name="lr_gate")
        lr_BTH = cfg.inner_base_lr * jax.nn.sigmoid(gate(x_BTD.astype(jnp.float32))) / f
        if mask_BT is not None:
            lr_BTH = lr_BTH * jnp.asarray(mask_BT, jnp.float32)[..., None]
        self.sow("intermediates", "inner_lr", lr_BTH)
        if decoding:
            out_BTHF, new_cache["inner"] = self.inner_decode(
                q_BTHF, k_BTHF, v_BTHF, lr_BTH, None if cache is None else cache["inner"], position
            )
        else:
            out_BTHF = self.inner_outputs(x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH)
        y = nn.LayerNorm(epsilon=1e-6, name="post_norm")(out_BTHF.reshape(b, t, d))
        y = nn.gelu(dense(name="wg")(x)) * y.astype(dtype)
        y = dense(name="wo")(y).astype(x_BTD.dtype)
        return (y, new_cache) if decoding else y

    def inner_outputs(self, x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH):
        """The inner loop on every (B, H) -> `out_BTHF`; TitansLayer and LaCTLayer replace it."""
        del x_BTD
        cfg = self.cfg
        n = cfg.mini_batch_size
        # Token-index scale s_i = max(0, 1/i + δ_i), δ learnable from 0 (official code).
        delta_N = self.param("token_offset", nn.initializers.zeros, (n,), jnp.float32)
        s_N = jnp.maximum(0.0, default_token_scale(n) + delta_N)
        inner_H = self.param("inner", self._init_inner)

        def one_head(params, s_N, q_TF, k_TF, v_TF, lr_T):
            out_TF, _ = inner_loop(
                cfg.inner,
                params,
                q_TF,
                k_TF,
                v_TF,
                lr_T,
                mini_batch_size=n,
                form=cfg.form,
                token_scale=s_N,
                unroll=cfg.unroll,
                remat_every=cfg.remat_every,
                impl=cfg.impl,
            )
            return out_TF

        # vmap over heads, then batch: one scan whose body processes every (B, H) at once.
        per_head = jax.vmap(one_head, in_axes=(0, None, 1, 1, 1, 1), out_axes=1)
        batched = jax.vmap(per_head, in_axes=(None, None, 0, 0, 0, 0))
        mesh = jax.sharding.get_abstract_mesh()
        if self.kernel_per_device(q_BTHF.shape[0], mesh):
            rows = jax.P(mesh.axis_names)  # the batch split over every device, as in training
            # check_vma off: the per-device inner loop has no collectives to type-check, and its
            # `jax.vjp` seeds would otherwise need the manual axes in their types.
            batched = jax.shard_map(
                batched,
                mesh=mesh,
                in_specs=(jax.P(), jax.P(), *[rows] * 4),
                out_specs=rows,
                check_vma=False,
            )
        return batched(inner_H, s_N, q_BTHF, k_BTHF, v_BTHF, lr_BTH)

    def kernel_per_device(self, batch_size: int, mesh) -> bool:
        """Whether the inner loop runs under shard_map: the fused kernel on a multi-device mesh."""
        cfg = self.cfg
        # The context mesh is the one `jax.set_mesh` sets (the training loop does); a kernel is a
        # custom call, which SPMD partitioning would replicate on every device. "pallas" is
        # shard_mapped on any backend: off a GPU the scan runs inside the same shard_map, so CPU
        # tests cover this path.
        return (
            requests_kernel(cfg.impl)
            and cfg.fits_kernel
            and not mesh.empty
            and mesh.size > 1
            and not mesh.manual_axes
            and batch_size % mesh.size == 0
        )

    def inner_decode(self, q_BTHF, k_BTHF, v_BTHF, lr_BTH, state, position):
        """`inner_outputs` for decoding: the prefill (state None) or one step from `state`."""
        if type(self).inner_outputs is not TTTLayer.inner_outputs:
            raise ValueError(
                f"{type(self).__name__} has no decode cache: its inner loop is not TTTLayer's"
            )
        cfg = self.cfg
        n = cfg.mini_batch_size
        delta_N = self.param("token_offset", nn.initializers.zeros, (n,), jnp.float32)
        s_N = jnp.maximum(0.0, default_token_scale(n) + delta_N)
        inner_H = self.param("inner", self._init_inner)
        opts = {"mini_batch_size": n, "token_scale": s_N}
        if state is None:
            fn = functools.partial(
                ttt_decode.prefill, cfg.inner, form=cfg.form, unroll=cfg.unroll,
                remat_every=cfg.remat_every, impl=cfg.impl, **opts,
            )  # fmt: skip
            per_head = jax.vmap(fn, in_axes=(0, 1, 1, 1, 1), out_axes=(1, 0))
            return jax.vmap(per_head, in_axes=(None, 0, 0, 0, 0))(
                inner_H, q_BTHF, k_BTHF, v_BTHF, lr_BTH
            )

        def one_head(params, state, q_F, k_F, v_F, lr):
            return ttt_decode.step(cfg.inner, params, state, q_F, k_F, v_F, lr, position, **opts)

        per_head = jax.vmap(one_head, in_axes=(0, 0, 0, 0, 0, 0))
        out_BHF, state = jax.vmap(per_head, in_axes=(None, 0, 0, 0, 0, 0))(
            inner_H, state, q_BTHF[:, 0], k_BTHF[:, 0], v_BTHF[:, 0], lr_BTH[:, 0]
        )
        return out_BHF[:, None], state

    def _conv(self, name):
        """Causal depthwise conv over T (left padding), with bias, as in the official code."""
        return DepthwiseCausalConv(self.cfg.conv_width, dtype=jnp.dtype(self.cfg.dtype), name=name)

    def _init_inner(self, key):
        """Initial inner weights, one set per head (learned by the outer loop)."""
        cfg = self.cfg
        learner = get_learner(cfg.inner)
        keys = jax.random.split(key, cfg.num_heads)
        return jax.vmap(lambda k: learner.init(k, cfg.head_dim, **cfg.learner_options()))(keys)

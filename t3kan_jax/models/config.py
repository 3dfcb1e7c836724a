"""`ModelConfig`: the frozen, validated model description every model module receives."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from t3kan_jax.ttt import pallas_linear
from t3kan_jax.ttt.inner_loop import IMPLS
from t3kan_jax.ttt.learners import get_learner

ARCHS = ("ttt", "transformer", "kansformer", "kat")
INNERS = ("linear", "mlp", "kan")
BACKBONES = ("mamba", "transformer")
TTT_FORMS = ("dual", "primal")
TTT_IMPLS = IMPLS  # inner_loop / TTTConfig.impl
TTT_OPTIMIZERS = ("sgd", "titans", "lact")  # docs/inner_optimizers.md
LACT_INNERS = (*INNERS, "swiglu")  # LaCT also takes its SwiGLU fast weights
DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")

# Official TTT-LM sizes (Sun et al. 2024, ttt-lm-jax CONFIGS): (depth, width, SwiGLU hidden width).
# Heads are width // 64 here (head dim 64 for every preset); the official 760M uses 16 heads of 96.
PRESETS = {
    "125m": (12, 768, 2048),
    "350m": (24, 1024, 2736),
    "760m": (24, 1536, 4096),
    "1.3b": (24, 2048, 5504),
}
PRESET_HEAD_DIM = 64
KAT_GROUPS = 8  # GR-KAN channel groups (KAT §4.2)
SIZES = ("tiny", *PRESETS)

_CHOICES = {
    "arch": ARCHS,
    "inner": INNERS,
    "backbone": BACKBONES,
    "ttt_form": TTT_FORMS,
    "ttt_impl": TTT_IMPLS,
    "ttt_optimizer": TTT_OPTIMIZERS,
    "dtype": DTYPES,
    "param_dtype": DTYPES,
    "size": SIZES,
    "attention_impl": ATTENTION_IMPLS,
}
_POSITIVE_INTS = (
    "vocab_size",
    "max_len",
    "width",
    "depth",
    "num_heads",
    "mini_batch_size",
    "kan_grid_size",
    "lact_hidden_ratio",
)
_NONNEGATIVE_INTS = ("kan_degree", "conv_width", "remat_every", "mlp_hidden", "lact_window")
_POSITIVE_FLOATS = ("mlp_ratio", "rope_theta", "init_std")
_FLOATS = ("kan_grid_min", "kan_grid_max", "titans_momentum_bias", "titans_forget_bias")
_BOOLS = ("remat", "scan_layers", "lact_muon", "lact_renorm", "ttt_rope", "ttt_qk_norm")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Model hyper-parameters; the defaults are the tiny model for the synthetic sequence task.

    Fields:
      arch: "ttt" (T3Lin/T3MLP/T3KAN by `inner`), "transformer", "kansformer" or "kat".
      inner: TTT inner learner, "linear" | "mlp" | "kan" (arch "ttt" only).
      backbone: TTT block layout, "mamba" (conv, TTT, SwiGLU) or "transformer" (TTT, SwiGLU).
      vocab_size: tokens; presets keep it.
      max_len: longest sequence the model accepts.
      width, depth, num_heads: model width D, number of blocks, heads (width % num_heads == 0).
      mlp_ratio: SwiGLU hidden width = round(mlp_ratio * width) when `mlp_hidden` is 0.
      mini_batch_size: TTT inner mini-batch size b.
      base_lr: TTT inner base learning rate; None = the TTT layer's default (1.0 linear,
        0.1 mlp/kan).
      ttt_form: "dual" or "primal" computation of a TTT mini-batch.
      kan_grid_size, kan_degree, kan_grid_min, kan_grid_max: B-spline grid of every KAN layer.
      conv_width: causal depthwise conv width (mamba backbone and TTT Q/K convs); 0 = no convs
        (backbone "transformer" only).
      rope_theta: RoPE base, along the sequence axis.
      ttt_rope: RoPE on the TTT layer's Q and K (False: inner keys address by content alone).
      ttt_qk_norm: RMS-normalise the TTT layer's Q and K per head (|k|^2 = d; see TTTConfig).
      remat_every: TTT inner-loop rematerialisation group (mini-batches); 0 = off.
      dtype: compute dtype; parameters stay `param_dtype`, logits are float32.
      size: "tiny" or a preset; from_config sets width/depth/num_heads/mlp_hidden from it.
    Extra fields (not in the interface list):
      mlp_hidden: explicit SwiGLU hidden width (presets: the official values); 0 = from mlp_ratio.
      attention_impl: jax.nn.dot_product_attention backend, "auto" (JAX picks), "xla" or "cudnn"
        ("cudnn" needs dtype bfloat16 and a GPU).
      ttt_impl: TTT inner loop implementation: "xla" (a scan), "pallas" (fused GPU kernels; arch
        "ttt", ttt_optimizer "sgd", inner "linear", ttt_form "dual", remat_every 0; head dim and
        mini_batch_size powers of 2 >= 16; on a mesh each device runs them on its batch rows) or
        "auto" (pallas where it applies on GPUs; see inner_loop).
      param_dtype: parameter storage dtype.
      remat: wrap every block in nn.remat (recompute activations in the backward pass).
      scan_layers: run the blocks as one nn.scan over depth (compiles the block once: for the
        long compiles of deep models); parameters then sit under "blocks" with a leading depth
        axis, not block_0 .. block_{depth-1} (blocks.stack_block_params converts checkpoints).
      init_std: std of the normal init of embeddings and Dense kernels (official TTT-LM: 0.02).
      ttt_optimizer: inner optimizer of arch "ttt": "sgd" (mini-batch TTT), "titans" (momentum
        and forgetting, Titans memory as a layer) or "lact" (large-chunk TTT plus window
        attention; chunk = mini_batch_size; inner may also be "swiglu", LaCT's fast weights).
      titans_momentum_bias, titans_forget_bias: initial biases of the Titans gates η and α.
      lact_muon, lact_renorm: Muon-orthogonalised chunk updates; fast-weight renormalisation.
      lact_window: LaCT sliding-window attention span in tokens (0 = none).
      lact_hidden_ratio: SwiGLU fast-weight hidden width / head dim.
    """

    arch: str = "ttt"
    inner: str = "linear"
    backbone: str = "mamba"
    vocab_size: int = 128
    max_len: int = 32
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    mini_batch_size: int = 16
    base_lr: float | None = None
    ttt_form: str = "dual"
    kan_grid_size: int = 5
    kan_degree: int = 3
    kan_grid_min: float = -1.0
    kan_grid_max: float = 1.0
    conv_width: int = 4
    rope_theta: float = 10000.0
    ttt_rope: bool = True
    ttt_qk_norm: bool = False
    ttt_impl: str = "xla"
    remat_every: int = 0
    dtype: str = "float32"
    size: str = "tiny"
    mlp_hidden: int = 0
    attention_impl: str = "auto"
    param_dtype: str = "float32"
    remat: bool = False
    scan_layers: bool = False
    init_std: float = 0.02
    ttt_optimizer: str = "sgd"
    titans_momentum_bias: float = 0.0
    titans_forget_bias: float = -4.0
    lact_muon: bool = True
    lact_renorm: bool = True
    lact_window: int = 2048
    lact_hidden_ratio: int = 1

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if name == "inner" and self.ttt_optimizer == "lact":
                allowed = LACT_INNERS
            if value not in allowed:
                raise ValueError(f"ModelConfig.{name}={value!r}: allowed values are {allowed}")
        for name in _POSITIVE_INTS + _NONNEGATIVE_INTS:
            value = getattr(self, name)
            low = 1 if name in _POSITIVE_INTS else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                kind = "a positive" if low else "a non-negative"
                raise ValueError(f"ModelConfig.{name}={value!r}: must be {kind} int")
        for name in _POSITIVE_FLOATS + _FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"ModelConfig.{name}={value!r}: must be a number")
            if name in _POSITIVE_FLOATS and not value > 0:
                raise ValueError(f"ModelConfig.{name}={value!r}: must be > 0")
        if self.base_lr is not None and (
            isinstance(self.base_lr, bool)
            or not isinstance(self.base_lr, int | float)
            or not self.base_lr > 0
        ):
            raise ValueError(f"ModelConfig.base_lr={self.base_lr!r}: must be None or a number > 0")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r}: must be True or False"
                )
        self._check_relations()

    def _check_relations(self):
        """Constraints between fields."""
        if self.width % self.num_heads:
            raise ValueError(
                f"ModelConfig.width={self.width} must be divisible by num_heads={self.num_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"ModelConfig.width / num_heads = {self.head_dim}: head dim must be even (RoPE)"
            )
        if not self.kan_grid_min < self.kan_grid_max:
            raise ValueError(
                f"ModelConfig.kan_grid_min={self.kan_grid_min} must be < "
                f"kan_grid_max={self.kan_grid_max}"
            )
        pallas_case = (self.arch, self.ttt_optimizer, self.inner, self.ttt_form, self.remat_every)
        if self.ttt_impl == "pallas" and not (
            pallas_case[:2] == ("ttt", "sgd")
            and pallas_linear.applies(
                get_learner(self.inner),
                self.ttt_form,
                self.remat_every,
                self.head_dim,
                self.mini_batch_size,
            )
        ):
            raise ValueError(
                "ModelConfig.ttt_impl='pallas' needs arch 'ttt', ttt_optimizer 'sgd', inner "
                "'linear', ttt_form 'dual', remat_every 0, and head dim (width / num_heads) and "
                f"mini_batch_size powers of 2 >= {pallas_linear.MIN_TILE}; got {pallas_case}, "
                f"head dim {self.head_dim}, "
                f"mini_batch_size {self.mini_batch_size} (or use ttt_impl 'auto' or 'xla')"
            )
        if self.arch == "ttt" and self.backbone == "mamba" and self.conv_width == 0:
            raise ValueError(
                "ModelConfig.conv_width=0: backbone 'mamba' needs conv_width >= 1 "
                "(use backbone 'transformer' for no convs)"
            )
        if self.attention_impl == "cudnn" and self.dtype != "bfloat16":
            raise ValueError(
                f"ModelConfig.attention_impl='cudnn' needs dtype 'bfloat16', got {self.dtype!r}"
            )
        if self.arch == "kat" and (self.width % KAT_GROUPS or self.kat_hidden_size % KAT_GROUPS):
            raise ValueError(
                f"ModelConfig.width={self.width} and the KAT hidden width {self.kat_hidden_size} "
                f"(3/2 of mlp_hidden / mlp_ratio * width) must be divisible by {KAT_GROUPS} groups"
            )
        if self.size != "tiny":
            expected = preset_fields(self.size)
            wrong = {k: getattr(self, k) for k, v in expected.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(
                    f"ModelConfig.size={self.size!r} fixes {expected}, got {wrong}: build it with "
                    "ModelConfig.from_config or use size='tiny'"
                )

    @property
    def head_dim(self) -> int:
        """Width of one head (the papers' d)."""
        return self.width // self.num_heads

    @property
    def mlp_hidden_size(self) -> int:
        """SwiGLU hidden width."""
        return self.mlp_hidden or round(self.mlp_ratio * self.width)

    @property
    def kat_hidden_size(self) -> int:
        """KAT MLP hidden width: 3/2 of the SwiGLU's (same parameter count with two matrices)."""
        return 3 * self.mlp_hidden_size // 2

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every field, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, cd: Any) -> "ModelConfig":
        """From a ConfigDict (or mapping): rejects unknown fields, applies the `size` preset."""
        if not isinstance(cd, Mapping) and not hasattr(cd, "to_dict"):
            raise ValueError(
                f"ModelConfig.from_config: expected a ConfigDict or mapping, got {cd!r}"
            )
        values = dict(cd.to_dict() if hasattr(cd, "to_dict") else cd)
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"ModelConfig: unknown field(s) {unknown}; allowed fields are {cls.field_names()}"
            )
        size = values.get("size", "tiny")
        if size != "tiny":
            if size not in PRESETS:
                raise ValueError(f"ModelConfig.size={size!r}: allowed values are {SIZES}")
            values.update(preset_fields(size))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for logs and checkpoints)."""
        return dataclasses.asdict(self)


def preset_fields(size: str) -> dict[str, int]:
    """The fields a preset fixes: depth, width, num_heads (head dim 64), mlp_hidden."""
    depth, width, hidden = PRESETS[size]
    return {
        "depth": depth,
        "width": width,
        "num_heads": width // PRESET_HEAD_DIM,
        "mlp_hidden": hidden,
    }

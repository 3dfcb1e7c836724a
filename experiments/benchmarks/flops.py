"""Model FLOPs of a training step (the MFU numerator) and peak device rates (the denominator).

Per token, forward + backward, matmul FLOPs only (elementwise work, norms, softmax, spline bases
and recomputation under remat are not counted, as in PaLM appendix B):

    F = 6 N  +  6 L D T  (attention archs)  +  3 L H F_ttt / b  (TTT archs)

- `6 N`: N = parameters of the weight matrices (ndim >= 2: Dense kernels, the untied LM head),
  without the input embedding table (a gather), the depthwise conv kernels (shifted
  multiply-adds, elementwise work: `t3kan_jax/ttt/conv.py`) and the TTT layers' initial inner
  weights (counted by the inner-loop term). A matrix weight does 2 FLOPs per token forward and
  4 backward (Kaplan et al. 2020; PaLM appendix B).
- attention: PaLM's `12 L H Q T` (H heads of dim Q, H Q = D) counts the full `T x T` scores of
  `Q Kᵀ` and `P V`; a causal flash kernel computes only the lower triangle, so it is halved:
  `6 L D T`.
- TTT (dual form, `t3kan_jax/ttt/inner_loop.py`): `F_ttt` = forward matmul FLOPs of one head and
  one mini-batch of b tokens (`dual_minibatch_flops`), times 3 for forward + backward, for each of
  the L layers' H heads; T is padded to whole mini-batches as the inner loop does.
"""

import math

import jax

from t3kan_jax.models import ModelConfig
from t3kan_jax.models.blocks import unstack_block_params
from t3kan_jax.ttt.learners import get_learner

ATTENTION_ARCHS = ("transformer", "kansformer", "kat")
# Dense bf16 peak rates (NVIDIA datasheets), matched in order against device_kind.
PEAK_BF16_FLOPS = (
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
)


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def matmul_params(params) -> int:
    """N: scalars in weights of ndim >= 2 but the `embed`, `*conv*` and TTT `inner` weights."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = _path_names(path)
        skip = "embed" in names or "inner" in names or any("conv" in name for name in names)
        if len(leaf.shape) >= 2 and not skip:
            total += math.prod(leaf.shape)
    return total


def attention_flops_per_token(depth: int, width: int, seq_len: int, causal: bool = True) -> int:
    """`12 L D T` for forward + backward of `Q Kᵀ` and `P V` (PaLM), halved when causal."""
    full = 12 * depth * width * seq_len
    return full // 2 if causal else full


def inner_dims(inner: str, inner_params_H) -> tuple[tuple[int, int], ...]:
    """`(I_l, O_l)` of each dense layer of the learner's dual form, from one head's params."""
    learner = get_learner(inner)
    if learner.dual is None:
        raise ValueError(f"inner={inner!r} has no dual form: its FLOPs are not modelled")
    one_head = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), inner_params_H)
    dense = jax.eval_shape(learner.dual.to_dense, one_head)
    return tuple(tuple(w.shape) for w, _ in dense)


def dual_minibatch_flops(dims, mini_batch_size: int) -> int:
    """Forward matmul FLOPs of one head on one mini-batch, dual form (`inner_loop._dual_step`).

    Layer 0 (`I_0 -> O_0`, bias folded in: `I = I_0 + 1`), per mini-batch of b tokens:
      2 b² I          kernel `φ(q) φ(k)ᵀ` (computed before the scan)
      4 b I O_0       `[φ(k); φ(q)] W̃_0`
      2 (b + I) b O_0 `[η ⊙ tril(kernel); η_b φ(k)ᵀ] G_0`: query correction and update of W̃_0
    Each later layer l (`I_l -> O_l`, e.g. TTT-MLP's second layer):
      8 b I_l O_l        keys forward, delta back-propagation `G_l W_lᵀ`, queries forward,
                         update `φ(k)ᵀ (η_b ⊙ G_l)`
      2 b² (I_l + O_l)   `φ(q) φ(k)ᵀ` and its product with `G_l`
      2 b O_l            bias update `η_bᵀ G_l`
    TTT-Linear: one layer (d, d); TTT-KAN: one layer (d (1 + G + p), d) on `[silu(k), B(k)]`;
    TTT-MLP: (d, 4d), (4d, d).
    """
    b = mini_batch_size
    (i0, o0), rest = dims[0], dims[1:]
    i = i0 + 1
    flops = 2 * b * b * i + 4 * b * i * o0 + 2 * (b + i) * b * o0
    for il, ol in rest:
        flops += 8 * b * il * ol + 2 * b * b * (il + ol) + 2 * b * ol
    return flops


def ttt_flops_per_token(dims, mini_batch_size: int, seq_len: int) -> float:
    """Forward + backward inner-loop FLOPs per token of one head (3x the forward)."""
    minibatches = -(-seq_len // mini_batch_size)
    return 3 * minibatches * dual_minibatch_flops(dims, mini_batch_size) / seq_len


def model_flops_per_token(cfg: ModelConfig, params, seq_len: int) -> float:
    """F of the module docstring for `cfg` at length `seq_len` (params: arrays or shapes)."""
    params = unstack_block_params(params)  # either layout of ModelConfig.scan_layers
    flops = 6 * matmul_params(params)
    if cfg.arch in ATTENTION_ARCHS:
        flops += attention_flops_per_token(cfg.depth, cfg.width, seq_len)
    if cfg.arch == "ttt":
        if cfg.ttt_form != "dual":
            raise ValueError(f"ModelConfig.ttt_form={cfg.ttt_form!r}: FLOPs modelled for 'dual'")
        inner_H = params["params"]["block_0"]["ttt"]["inner"]
        dims = inner_dims(cfg.inner, inner_H)
        per_head = ttt_flops_per_token(dims, cfg.mini_batch_size, seq_len)
        flops += cfg.depth * cfg.num_heads * per_head
    return flops


def peak_flops(device_kind: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device, or None when unknown (CPU, other GPUs)."""
    kind = device_kind.upper()
    for name, rate in PEAK_BF16_FLOPS:
        if name in kind:
            return rate
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak (None if unknown)."""
    if peak is None:
        return None
    return flops_per_token * tokens_per_s / peak

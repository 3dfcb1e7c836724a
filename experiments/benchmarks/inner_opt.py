"""Inner optimizers beyond SGD, forward+backward (`--suite=inner_opt`): Titans and LaCT.

Every row times `grad(sum(outputs))` with respect to all inputs and parameters, the inner loop
vmapped over (B, H) as the layers run it. Rows: the Titans memory (momentum + forgetting,
mini-batch b = 16) per inner learner and form; LaCT's large-chunk SwiGLU fast weights per chunk
size, with and without Muon; plain TTT-Linear (dual, b = 16) as the reference point of
`--suite=ttt`; then the Titans and LaCT layers (`TitansLayer`, `LaCTLayer`). Shapes `B, H, T, d`.

Row selection (environment): BENCH_INNER_OPT_SHAPES (indices into FULL_SHAPES, default all),
BENCH_INNER_OPT_PARTS (default titans,lact,ttt,layers).
"""

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import env_list
from experiments.benchmarks.ttt import _timed
from t3kan_jax.ttt import get_learner, inner_loop
from t3kan_jax.ttt.lact import lact_inner_loop
from t3kan_jax.ttt.titans import titans_inner_loop

FULL_SHAPES = ((8, 12, 2048, 64), (2, 12, 8192, 64))
QUICK_SHAPES = ((2, 2, 64, 16),)
MINI_BATCH = 16
TITANS_ROWS = (("linear", "dual"), ("mlp", "dual"), ("kan", "dual"), ("linear", "primal"))
# Chunks shorter than T: with one chunk the outputs never read an update (its backward is pruned).
FULL_CHUNKS = {2048: (256, 512, 1024), 8192: (1024, 2048, 4096)}
QUICK_CHUNKS = (16, 32)


def _grad_of_sum(one):
    """jit(grad) of the summed outputs of `one(params, *per_head_inputs)` over (B, H)."""

    def total(params_H, *xs):
        per_batch = jax.vmap(one)
        return jnp.sum(jax.vmap(per_batch, in_axes=(None,) + (0,) * len(xs))(params_H, *xs))

    return jax.jit(lambda params_H, *xs: jax.grad(total, argnums=tuple(range(len(xs) + 1)))(
        params_H, *xs))  # fmt: skip


def _args(kind, shape, seed, gates):
    """Per-head params `[H, ...]`, inputs `[B, H, T, d]` and `gates` per-token rates `[B, H, T]`."""
    b, h, t, f = shape
    keys = jax.random.split(jax.random.key(seed), 4 + gates)
    learner = get_learner(kind)
    params = jax.vmap(lambda k: learner.init(k, f))(jax.random.split(keys[0], h))
    q, k, v = (jax.random.normal(key, (b, h, t, f)) for key in keys[1:4])
    rates = [jax.nn.sigmoid(jax.random.normal(key, (b, h, t))) for key in keys[4:]]
    rates[0] = learner.default_base_lr * rates[0] / f
    return (params, q, k, v, *rates)


def _titans(kind, form):
    def one(p, q, k, v, lr, momentum, forget):
        out, _ = titans_inner_loop(
            kind, p, q, k, v, lr, momentum, forget, mini_batch_size=MINI_BATCH, form=form
        )
        return out

    return _grad_of_sum(one)


def _lact(chunk, muon):
    def one(p, q, k, v, lr):
        return lact_inner_loop("swiglu", p, q, k, v, lr, chunk_size=chunk, muon=muon)[0]

    return _grad_of_sum(one)


def _ttt_linear():
    def one(p, q, k, v, lr):
        return inner_loop("linear", p, q, k, v, lr, mini_batch_size=MINI_BATCH)[0]

    return _grad_of_sum(one)


def _layer_rows(shape, tag, iters) -> list[dict]:
    """TitansLayer (linear memory) and LaCTLayer (SwiGLU, Muon, the largest chunk < T) fwd+bwd."""
    from t3kan_jax.ttt.lact_layer import LaCTConfig, LaCTLayer
    from t3kan_jax.ttt.titans_layer import TitansConfig, TitansLayer

    b, h, t, f = shape
    chunk = max(FULL_CHUNKS.get(t) or QUICK_CHUNKS)
    layers = {
        "TitansLayer-linear": (TitansLayer, TitansConfig(width=h * f, num_heads=h)),
        f"LaCTLayer-c{chunk}": (
            LaCTLayer,
            LaCTConfig(width=h * f, num_heads=h, mini_batch_size=chunk, window=chunk),
        ),
    }
    rows = []
    xs = [jax.random.normal(jax.random.key(s), (b, t, h * f)) for s in (0, 1)]
    for name, (cls, cfg) in layers.items():
        layer = cls(cfg)
        fn = jax.jit(jax.grad(lambda p, x, layer=layer: jnp.sum(layer.apply(p, x)), argnums=(0, 1)))
        params = jax.jit(layer.init)(jax.random.key(0), xs[0])
        rows.append({**tag, "impl": name, **_timed(fn, [(params, x) for x in xs], iters)})
    return rows


PARTS = ("titans", "lact", "ttt", "layers")


def run(quick: bool):
    """Rows of fwd+bwd timings: Titans per learner and form, LaCT per chunk, TTT-Linear, layers."""
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    chosen = env_list("BENCH_INNER_OPT_SHAPES", tuple(range(len(shapes))), int, range(len(shapes)))
    parts = env_list("BENCH_INNER_OPT_PARTS", PARTS, allowed=PARTS)
    iters = 5 if quick else 20
    for i in chosen:
        shape = shapes[i]
        b, h, t, f = shape
        tag = {"B": b, "H": h, "T": t, "d": f}
        for kind, form in TITANS_ROWS if "titans" in parts else ():
            arg_sets = [_args(kind, shape, seed, gates=3) for seed in (0, 1)]
            stats = _timed(_titans(kind, form), arg_sets, iters)
            yield {**tag, "impl": f"titans-{kind}", "form": form, "b": MINI_BATCH, **stats}
        if "lact" in parts:
            arg_sets = [_args("swiglu", shape, seed, gates=1) for seed in (0, 1)]
        for chunk in (QUICK_CHUNKS if quick else FULL_CHUNKS[t]) if "lact" in parts else ():
            for muon in (False, True):
                stats = _timed(_lact(chunk, muon), arg_sets, iters)
                impl = "lact-swiglu" + ("-muon" if muon else "")
                yield {**tag, "impl": impl, "form": "chunk", "b": chunk, **stats}
        if "ttt" in parts:
            arg_sets = [_args("linear", shape, seed, gates=1) for seed in (0, 1)]
            stats = _timed(_ttt_linear(), arg_sets, iters)
            yield {**tag, "impl": "ttt-linear", "form": "dual", "b": MINI_BATCH, **stats}
        if i == 0 and "layers" in parts:
            yield from _layer_rows(shape, tag, iters)

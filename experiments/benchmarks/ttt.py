"""TTT inner loop and layer, forward+backward, against causal attention (`--suite=ttt`).

Every row times `grad(sum(outputs))` with respect to all inputs and parameters. The inner loop is
vmapped over (B, H) as the layer runs it; attention is `jax.nn.dot_product_attention` in bfloat16
(cuDNN where it runs, else XLA). Shapes are `B, H, T, d` with mini-batch b = 16.

Row selection (environment): BENCH_TTT_SHAPES (indices into FULL_SHAPES, default all),
BENCH_TTT_KINDS (default linear,mlp,kan), BENCH_TTT_FORMS (default dual,primal), BENCH_TTT_SWEEP
("0" drops the unroll/remat sweep rows), BENCH_TTT_EXTRA ("0" drops the attention and layer rows),
BENCH_TTT_IMPLS (inner loop implementations, default xla; "pallas" rows, the fused kernels of
t3kan_jax/ttt/pallas_linear.py, exist for linear/dual and the layer on a GPU only).
"""

import os
import time

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import env_list, time_fn
from t3kan_jax.ttt import get_learner, inner_loop
from t3kan_jax.ttt.layer import TTTConfig, TTTLayer

FULL_SHAPES = ((8, 12, 2048, 64), (2, 12, 8192, 64))
QUICK_SHAPES = ((2, 2, 64, 16), (1, 2, 128, 16))
MINI_BATCH = 16
KINDS = ("linear", "mlp", "kan")
FORMS = ("dual", "primal")
IMPLS = ("xla", "pallas")
UNROLL = 4
# Extra (unroll, remat_every) rows for the dual forms at the first full shape, to pick defaults.
SWEEP = {
    "linear": ((1, 0), (2, 0), (8, 0), (4, 1), (4, 4), (8, 8)),
    "mlp": ((8, 0), (4, 1), (4, 4)),
}


def _inner_grad(kind: str, form: str, unroll: int, remat_every: int = 0, impl: str = "xla"):
    """jit(grad) of the summed inner-loop outputs, vmapped over batch and heads."""

    def total(params_H, q, k, v, lr):
        def one(p, q_TF, k_TF, v_TF, lr_T):
            out, _ = inner_loop(
                kind, p, q_TF, k_TF, v_TF, lr_T, mini_batch_size=MINI_BATCH, form=form,
                unroll=unroll, remat_every=remat_every, impl=impl,
            )  # fmt: skip
            return out

        per_batch = jax.vmap(one)
        return jnp.sum(jax.vmap(per_batch, in_axes=(None, 0, 0, 0, 0))(params_H, q, k, v, lr))

    return jax.jit(jax.grad(total, argnums=(0, 1, 2, 3, 4)))


def _inner_args(kind, shape, seed):
    b, h, t, f = shape
    keys = jax.random.split(jax.random.key(seed), 5)
    learner = get_learner(kind)
    params = jax.vmap(lambda k: learner.init(k, f))(jax.random.split(keys[0], h))
    q, k, v = (jax.random.normal(key, (b, h, t, f)) for key in keys[1:4])
    lr = learner.default_base_lr * jax.nn.sigmoid(jax.random.normal(keys[4], (b, h, t))) / f
    return params, q, k, v, lr


def _attention_grad(implementation: str):
    def total(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)
        return jnp.sum(out.astype(jnp.float32))

    return jax.jit(jax.grad(total, argnums=(0, 1, 2)))


def _attention_args(shape, seed):
    b, h, t, f = shape
    keys = jax.random.split(jax.random.key(seed), 3)
    return tuple(jax.random.normal(key, (b, t, h, f), jnp.bfloat16) for key in keys)


def _layer_grad(cfg: TTTConfig):
    layer = TTTLayer(cfg)

    def total(params, x):
        return jnp.sum(layer.apply(params, x))

    return jax.jit(jax.grad(total, argnums=(0, 1))), layer


def _timed(fn, arg_sets, iters) -> dict:
    """Compile time and run-time statistics; an error (e.g. out of memory) becomes a row field."""
    try:
        start = time.perf_counter()
        compiled = fn.lower(*arg_sets[0]).compile()
        compile_s = time.perf_counter() - start
        stats = time_fn(compiled, arg_sets, warmup=2, iters=iters)
    except Exception as e:  # a failing row (e.g. out of memory) must not stop the suite
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    return {"compile_s": compile_s, **stats}


def run(quick: bool):
    """Rows of fwd+bwd timings: inner loop per kind and form, attention, and the linear layer."""
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    chosen = env_list("BENCH_TTT_SHAPES", tuple(range(len(shapes))), int, range(len(shapes)))
    kinds = env_list("BENCH_TTT_KINDS", KINDS, allowed=KINDS)
    forms = env_list("BENCH_TTT_FORMS", FORMS, allowed=FORMS)
    sweep = os.environ.get("BENCH_TTT_SWEEP", "1") != "0"
    extra = os.environ.get("BENCH_TTT_EXTRA", "1") != "0"
    impls = env_list("BENCH_TTT_IMPLS", ("xla",), allowed=IMPLS)
    # Off a GPU impl="pallas" runs the XLA scan: no row would time the kernels.
    pallas = "pallas" in impls and jax.default_backend() == "gpu"
    iters = 5 if quick else 20
    for i in chosen:
        b, h, t, f = shapes[i]
        tag = {"B": b, "H": h, "T": t, "d": f, "b": MINI_BATCH}
        for kind in kinds:
            arg_sets = [_inner_args(kind, shapes[i], seed) for seed in (0, 1)]
            for form in forms:
                settings = [(UNROLL, 0)]
                if sweep and not quick and i == 0 and form == "dual":
                    settings += SWEEP.get(kind, ())
                settings = [(*setting, "xla") for setting in settings if "xla" in impls]
                if pallas and (kind, form) == ("linear", "dual"):
                    settings.append((UNROLL, 0, "pallas"))
                for unroll, remat, impl in settings:
                    stats = _timed(_inner_grad(kind, form, unroll, remat, impl), arg_sets, iters)
                    yield (
                        {**tag, "impl": f"ttt-{kind}", "form": form, "unroll": unroll}
                        | {"remat_every": remat, "inner_impl": impl, **stats}
                    )
        if not extra:
            continue
        attention_args = [_attention_args(shapes[i], seed) for seed in (0, 1)]
        backends = ("cudnn", "xla") if jax.default_backend() == "gpu" else ("xla",)
        for backend in backends:
            stats = _timed(_attention_grad(backend), attention_args, iters)
            yield {**tag, "impl": f"attention-{backend}", "form": "bf16", **stats}
        layer_impls = [impl for impl in impls if impl == "xla" or pallas]
        for impl in layer_impls if i == 0 else ():
            cfg = TTTConfig(
                width=h * f, num_heads=h, inner="linear", mini_batch_size=MINI_BATCH, impl=impl
            )
            fn, layer = _layer_grad(cfg)
            xs = [jax.random.normal(jax.random.key(s), (b, t, h * f)) for s in (0, 1)]
            params = layer.init(jax.random.key(0), xs[0])
            stats = _timed(fn, [(params, x) for x in xs], iters)
            yield (
                {**tag, "impl": "TTTLayer-linear", "form": "dual", "unroll": UNROLL}
                | {"inner_impl": impl, **stats}
            )

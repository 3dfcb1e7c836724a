"""The model benchmark suite: its --quick run on CPU, the FLOP formulas and the row assembly.

The FLOP formulas of experiments/benchmarks/flops.py are checked against the matmul FLOPs counted
in the jaxprs of the inner loop and of the models' forward pass (3x for forward + backward).
"""

import math
import types

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jex_core

from experiments.benchmarks import flops, model
from t3kan_jax.models import ModelConfig, abstract_params, build_model
from t3kan_jax.ttt import get_learner, inner_loop


def _matmul_flops(jaxpr) -> int:
    """2 x multiply-adds of every contracting dot_general and conv in a jaxpr (scans x length)."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "while":
            raise ValueError("while loops have no static trip count")
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            # A dot_general without contracting dims is an elementwise product (an einsum).
            if contract:
                depth = math.prod(eqn.invars[0].aval.shape[d] for d in contract)
                total += 2 * math.prod(eqn.outvars[0].aval.shape) * depth
        elif name == "conv_general_dilated":
            rhs_spec = eqn.params["dimension_numbers"].rhs_spec
            kernel = eqn.invars[1].aval.shape
            depth = kernel[rhs_spec[1]] * math.prod(kernel[d] for d in rhs_spec[2:])
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * depth
        times = eqn.params["length"] if name == "scan" else 1
        total += times * sum(_matmul_flops(j) for j in jex_core.jaxprs_in_params(eqn.params))
    return total


def test_known_tiny_case():
    # TTT-Linear, d = 4, b = 2 (I = d + 1 = 5): 2·b²·I + 4·b·I·d + 2·(b + I)·b·d = 40 + 160 + 112.
    assert flops.dual_minibatch_flops(((4, 4),), 2) == 312
    # T = 4: two mini-batches, x3 for forward + backward, per token.
    assert flops.ttt_flops_per_token(((4, 4),), 2, 4) == 3 * 2 * 312 / 4
    # Attention, L = 2, D = 8, T = 16: 12·L·D·T = 3072 (PaLM), 1536 causal.
    assert flops.attention_flops_per_token(2, 8, 16, causal=False) == 3072
    assert flops.attention_flops_per_token(2, 8, 16) == 1536
    tree = {
        "params": {
            "embed": {"embedding": jnp.zeros((10, 4))},
            "block_0": {
                "ttt": {"inner": {"W": jnp.zeros((2, 4, 4))}, "wv": {"kernel": jnp.zeros((4, 4))}},
                "norm": {"scale": jnp.zeros((4,))},
            },
            "lm_head": {"kernel": jnp.zeros((4, 10))},
        }
    }
    assert flops.matmul_params(tree) == 16 + 40
    # 1 GFLOP per token at 1e5 tokens/s on a 989 TFLOP/s device: 1e14 / 989e12.
    assert flops.mfu(1e9, 1e5, 989e12) == pytest.approx(0.1011122)
    assert flops.mfu(1e9, 1e5, None) is None
    assert flops.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert flops.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert flops.peak_flops("NVIDIA H200") == 989e12
    assert flops.peak_flops("cpu") is None


@pytest.mark.parametrize("kind", ["linear", "mlp", "kan"])
def test_dual_minibatch_flops_match_jaxpr(kind):
    d, b, t = 8, 4, 16
    params = get_learner(kind).init(jax.random.key(0), d)
    x_TF, lr_T = jnp.ones((t, d)), jnp.ones((t,))

    def fwd(p, q, k, v, lr):
        return inner_loop(kind, p, q, k, v, lr, mini_batch_size=b, form="dual")[0]

    counted = _matmul_flops(jax.make_jaxpr(fwd)(params, x_TF, x_TF, x_TF, lr_T).jaxpr)
    dims = flops.inner_dims(kind, jax.tree.map(lambda a: a[None], params))
    assert counted == (t // b) * flops.dual_minibatch_flops(dims, b)


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("name", list(model.MODELS))
def test_model_flops_match_jaxpr(name, scan_layers):
    t = 32
    fields = dict(model.MODELS[name], vocab_size=128, max_len=t, scan_layers=scan_layers)
    if name == "Transformer":
        fields["attention_impl"] = "xla"
    cfg = ModelConfig(**fields)
    params = abstract_params(cfg)
    tokens_BT = jax.ShapeDtypeStruct((2, t), jnp.int32)
    jaxpr = jax.make_jaxpr(build_model(cfg).apply)(params, tokens_BT).jaxpr
    counted = 3 * _matmul_flops(jaxpr) / (2 * t)
    expected = flops.model_flops_per_token(cfg, params, t)
    if cfg.arch == "transformer":
        # XLA attention computes the full T x T scores; the formula counts the causal half.
        expected += flops.attention_flops_per_token(cfg.depth, cfg.width, t)
    assert counted == expected


@pytest.mark.slow  # ~30 s of compiles on CI; the FLOP and field checks above stay fast
def test_quick_run_rows(monkeypatch):
    monkeypatch.delenv("BENCH_MODEL_REMAT", raising=False)
    monkeypatch.delenv("BENCH_MODEL_SCAN_LAYERS", raising=False)
    rows = model.run(quick=True)
    assert [(r["model"], r["T"]) for r in rows] == [
        (m, t) for m in model.QUICK_MODELS for t in model.QUICK_T
    ]
    by_key = {(r["model"], r["T"]): r for r in rows}
    for r in rows:
        assert tuple(r) == model.COLUMNS
        assert r["error"] is None, r["error"]
        assert r["batch"] * r["T"] == r["tokens_per_step"] == model.QUICK_TOKENS
        assert r["step_ms"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / (r["step_ms"] / 1e3))
        assert r["mfu"] is None  # CPU: no known peak rate
        assert r["mem_method"] == "compiled" and r["peak_mem_gb"] > 0
        assert r["remat"] is False
        assert r["scan_layers"] is True
        cfg = model.model_config(r["model"], r["T"], quick=True)
        assert r["flops_per_token"] == flops.model_flops_per_token(
            cfg, abstract_params(cfg), r["T"]
        )
        assert r["model_tflops"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 1e12)
        transformer = by_key[("Transformer", r["T"])]
        ratio = r["tokens_per_s"] / transformer["tokens_per_s"]
        assert r["ratio_vs_transformer"] == pytest.approx(ratio)
        shortest = by_key[(r["model"], min(model.QUICK_T))]
        assert r["step_vs_min_T"] == pytest.approx(r["step_ms"] / shortest["step_ms"])
    assert "inner fp32" in by_key[("T3Lin", 32)]["precision"]
    assert "attn xla bf16" in by_key[("Transformer", 32)]["precision"]


def test_run_records_errors_and_skips(monkeypatch):
    def fake_measure(name, seq_len, tokens, **kwargs):
        if name == "T3KAN":
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nmore")
        step_ms = seq_len / (2 if name == "T3Lin" else 1)
        return {"step_ms": step_ms, "tokens_per_s": tokens / step_ms * 1e3}

    monkeypatch.setattr(model, "measure", fake_measure)
    monkeypatch.delenv("BENCH_MODEL_TOKENS", raising=False)
    monkeypatch.delenv("BENCH_MODEL_MAIN_T", raising=False)
    monkeypatch.setenv("BENCH_MODEL_SWEEP_T", "1024,32768")
    monkeypatch.setenv("BENCH_MODEL_SWEEP_MODELS", "T3Lin,Transformer")
    monkeypatch.setenv("BENCH_MODEL_BUDGET_S", "1e9")
    rows = model.run(quick=False)
    assert len(rows) == 2 * len(model.MODELS) + 4
    kan = [r for r in rows if r["model"] == "T3KAN"]
    assert [r["error"] for r in kan] == ["RuntimeError: RESOURCE_EXHAUSTED: out of memory"] * 2
    assert all(r["ratio_vs_transformer"] is None for r in kan)
    lin = {r["T"]: r for r in rows if r["model"] == "T3Lin"}
    assert sorted(lin) == [1024, 2048, 8192, 32768]
    assert lin[32768]["ratio_vs_transformer"] == pytest.approx(2.0)
    assert lin[32768]["step_vs_min_T"] == pytest.approx(32.0)
    monkeypatch.setenv("BENCH_MODEL_BUDGET_S", "0")
    skipped = [r for r in model.run(quick=False) if r["T"] in (1024, 32768)]
    assert all(r["error"].startswith("skipped: time budget") for r in skipped)


def test_plan_from_environment(monkeypatch):
    monkeypatch.setenv("BENCH_MODEL_MAIN_T", "")
    monkeypatch.setenv("BENCH_MODEL_SWEEP_T", "1024,4096")
    monkeypatch.setenv("BENCH_MODEL_SWEEP_MODELS", "Transformer,T3Lin/T3KAN")
    assert model.plan(quick=False) == [
        ("Transformer", 4096, False),
        ("T3Lin", 4096, False),
        ("Transformer", 1024, False),
        ("T3Lin", 1024, False),
        ("T3KAN", 4096, False),
        ("T3KAN", 1024, False),
    ]


def test_plan_rejects_unknown_model(monkeypatch):
    monkeypatch.setenv("BENCH_MODEL_SWEEP_MODELS", "T3Lin,GPT")
    with pytest.raises(ValueError, match="BENCH_MODEL_SWEEP_MODELS"):
        model.plan(quick=False)


@pytest.mark.parametrize(
    ("mode", "before", "mem", "calls"),
    [
        ("auto", False, 50, [False]),  # fits in 90% of 100 bytes
        ("auto", False, 95, [False, True]),  # does not: recompiled with remat
        ("auto", True, 10, [True]),  # the model needed remat at an earlier T
        ("auto", False, None, [False]),  # no estimate: keep
        ("on", False, 10, [True]),
        ("off", True, 95, [False]),
    ],
)
def test_compile_fitting_remat_policy(monkeypatch, mode, before, mem, calls):
    seen = []

    def fake_compile(name, seq_len, batch_size, *, quick, remat, scan_layers):
        assert scan_layers is True
        seen.append(remat)
        return types.SimpleNamespace(remat=remat), None, None, None, mem

    monkeypatch.setattr(model, "_compile", fake_compile)
    monkeypatch.setattr(model, "_device_bytes_limit", lambda: 100)
    cfg, *_ = model.compile_fitting(
        "T3Lin", 32, 4, quick=True, remat_mode=mode, remat_before=before
    )
    assert seen == calls
    assert cfg.remat is calls[-1]


def test_run_rejects_bad_remat_mode(monkeypatch):
    monkeypatch.setenv("BENCH_MODEL_REMAT", "sometimes")
    with pytest.raises(ValueError, match="BENCH_MODEL_REMAT"):
        model.run(quick=True)


def test_scan_layers_from_environment(monkeypatch):
    monkeypatch.delenv("BENCH_MODEL_SCAN_LAYERS", raising=False)
    assert model.scan_layers_from_env() is True
    assert model.model_config("T3Lin", 32, quick=True).scan_layers is True
    monkeypatch.setenv("BENCH_MODEL_SCAN_LAYERS", "off")
    assert model.scan_layers_from_env() is False
    seen = []

    def fake_measure(name, seq_len, tokens, *, scan_layers, **kwargs):
        seen.append(scan_layers)
        return {"step_ms": 1.0, "tokens_per_s": 1.0, "scan_layers": scan_layers}

    monkeypatch.setattr(model, "measure", fake_measure)
    rows = model.run(quick=True)
    assert set(seen) == {False} and all(r["scan_layers"] is False for r in rows)
    monkeypatch.setenv("BENCH_MODEL_SCAN_LAYERS", "true")
    with pytest.raises(ValueError, match=r"BENCH_MODEL_SCAN_LAYERS='true'.*\('on', 'off'\)"):
        model.run(quick=True)

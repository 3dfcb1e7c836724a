"""Refits the GR-KAN initial rationals P5/Q4 to Swish and GELU (KAT, Yang & Wang 2024, §4.3).

`python -m experiments.fit_rational [--write]` prints the coefficients and their errors; `--write`
regenerates t3kan_jax/kan/rational_coeffs.py. Least squares on [-3, 3], plus the tails on
[-10, 10] at weight 0.1 so the rational stays close to the target outside the fitted range.
"""

import pathlib

import numpy as np
from absl import app, flags
from scipy.optimize import least_squares
from scipy.special import erf

_WRITE = flags.DEFINE_bool("write", False, "Rewrite t3kan_jax/kan/rational_coeffs.py.")

TARGETS = {
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
}
# GELU(x) ≈ Swish(1.702 x) / 1.702 (Hendrycks & Gimpel 2016): the GELU fit starts from the Swish
# fit rescaled by this factor, where a linearised start gets stuck.
_GELU_SWISH_SCALE = 1.702
_COEFFS_PATH = (
    pathlib.Path(__file__).resolve().parents[1] / "t3kan_jax" / "kan" / "rational_coeffs.py"
)


def rational_np(theta, x):
    """`P(x) / Q(x)` with `theta = (a_0..a_5, b_1..b_4)`, `Q = 1 + Σ |b_i| |x|^i`."""
    a, b = theta[:6], np.abs(theta[6:])
    ax = np.abs(x)
    return np.polyval(a[::-1], x) / (1.0 + ax * np.polyval(b[::-1], ax))


def _linearised_start(x, y):
    """Solves `P(x) - y Σ b_i |x|^i = y` (linear in a, b): the usual rational-fit start."""
    design = np.concatenate(
        [x[:, None] ** np.arange(6), -y[:, None] * np.abs(x[:, None]) ** np.arange(1, 5)], axis=1
    )
    return np.linalg.lstsq(design, y, rcond=None)[0]


def fit_rational(name: str, *, fit_range=3.0, tail_range=10.0, tail_weight=0.1, start=None):
    """`(numerator [6], denominator [4], max |error| on [-fit_range, fit_range])` for `name`."""
    if name not in TARGETS:
        raise ValueError(f"name must be one of {tuple(TARGETS)}, got {name!r}")
    f = TARGETS[name]
    x_fit = np.linspace(-fit_range, fit_range, 2001)
    x_tail = np.linspace(-tail_range, tail_range, 401)
    if start is None:
        start = _linearised_start(x_fit, f(x_fit))

    def residual(theta):
        return np.concatenate(
            [
                rational_np(theta, x_fit) - f(x_fit),
                tail_weight * (rational_np(theta, x_tail) - f(x_tail)),
            ]
        )

    # Q's coefficients enter as |b_i|; fitting b_i >= 0 as bounds keeps the problem smooth (the
    # GELU optimum has b_1 = 0, where the kink of |b_1| stalls an unconstrained solver).
    start = np.concatenate([start[:6], np.maximum(np.abs(start[6:]), 1e-6)])
    lower = np.concatenate([np.full(6, -np.inf), np.zeros(4)])
    sol = least_squares(
        residual, start, bounds=(lower, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15
    ).x
    x_check = np.linspace(-fit_range, fit_range, 6001)
    err = float(np.abs(rational_np(sol, x_check) - f(x_check)).max())
    return sol[:6], sol[6:], err


def fit_all():
    """Swish, then GELU started from the rescaled Swish fit: `{name: (num, den, err)}`."""
    num_s, den_s, err_s = fit_rational("swish")
    c = _GELU_SWISH_SCALE
    start = np.concatenate([num_s * c ** (np.arange(6) - 1.0), den_s * c ** np.arange(1.0, 5.0)])
    return {"swish": (num_s, den_s, err_s), "gelu": fit_rational("gelu", start=start)}


def _tuple(v):
    return "(\n" + "".join(f"    {float(a)!r},\n" for a in v) + ")"


def coeffs_module(fits) -> str:
    """Source text of rational_coeffs.py."""
    lines = [
        '"""GR-KAN initial coefficients from `python -m experiments.fit_rational --write`.',
        "",
        "P(x) = Σ_{i=0..5} a_i x^i (NUMERATOR, lowest order first),",
        "Q(x) = 1 + Σ_{i=1..4} |b_i| |x|^i (DENOMINATOR = b_1..b_4).",
        'The comments give the max |error| on [-3, 3]."""',
        "",
    ]
    for name, (num, den, err) in fits.items():
        lines += [
            f"# {name}: max |error| on [-3, 3] = {err:.3g}",
            f"{name.upper()}_NUMERATOR = {_tuple(num)}",
            f"{name.upper()}_DENOMINATOR = {_tuple(den)}",
        ]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    fits = fit_all()
    for name, (num, den, err) in fits.items():
        print(f"{name}: numerator {np.array2string(num, precision=8)}")
        print(
            f"{name}: denominator {np.array2string(den, precision=8)}  max |err| [-3,3] {err:.3g}"
        )
    if _WRITE.value:
        _COEFFS_PATH.write_text(coeffs_module(fits))
        print(f"wrote {_COEFFS_PATH}")


if __name__ == "__main__":
    app.run(main)

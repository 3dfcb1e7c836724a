"""t3kan_jax: test-time-training sequence models with KAN inner learners.

Shape suffixes in the math code name each axis by one letter, written once here:

    B  batch                      T  time (sequence position)
    H  heads                      D  model width
    F  head width (the papers' d) V  vocabulary
    N  tokens in one inner mini-batch (the papers' b)
    I  input features of a layer  O  output features of a layer
    K  basis functions per edge (G + p for B-splines)
    G  grid intervals             M  hidden width of an inner MLP (4d)
    S  knots (G + 2p + 1)         C  sequence components

So `x_BTD` is a [batch, time, width] array and `c_IOK` holds spline coefficients per edge and basis.
"""

__version__ = "0.1.0"

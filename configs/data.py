"""Data config: the synthetic sequence task (t3kan_jax.data; format in docs/data.md)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Defaults of the original generator, now seeded and split by draw."""
    config = ml_collections.ConfigDict()
    config.task = "sequences"  # The only task: interleaved arithmetic progressions.
    config.samples = 1000  # Rows in all (enhanced prefixes count); the last draw is truncated.
    config.vocab_size = 128  # V: values lie in [1, V-1]; rows have V // seq_step columns.
    config.pad_id = 0  # The pad token; 0 is the only legal value (no sequence value is 0).
    config.seq_step = 4  # S: each component's step |d| is uniform on 1..S.
    config.allow_descending = False  # If True, each step is negated with probability 1/2.
    config.components_number = 2  # N: a row interleaves C in 1..N arithmetic progressions.
    config.seq_components_weights = 3.0  # w > 0: P(C = k) ∝ w^(N-k); larger w, fewer components.
    config.enhance = True  # Also emit C-1 prefixes per draw, cut by 1, 3, 6, ... tokens.
    config.seed = 0  # Seeds the generator and the split into train/val/test.
    config.train_fraction = 0.8  # Fractions of *draws* (never rows) per split; must sum to 1.
    config.val_fraction = 0.1
    config.test_fraction = 0.1
    config.dir = ""  # If set, load this dataset (written by experiments.generate_data) instead.
    return config

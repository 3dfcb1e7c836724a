"""Experiment configurations: ml_collections `get_config()` files, one per model or task."""

"""Test setup: 8 fake CPU devices, set before JAX first runs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture
def x64():
    """float64 inside the test (gradient checks at 1e-10)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def fast_compiles():
    """Most XLA optimisation passes off for a module of numerics tests (compiles ~2x faster on
    CPU); used as `pytestmark = pytest.mark.usefixtures("fast_compiles")`."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)

"""Device mesh, parameter (FSDP) and batch shardings, multi-host start-up."""

import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from ml_collections import config_dict

from t3kan_jax.models.blocks import is_stacked

DATA = "data"
FSDP = "fsdp"
# Environment variables that launchers set to the number of processes of a multi-process job.
_PROCESS_COUNT_VARS = ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def maybe_initialize_distributed() -> bool:
    """Calls jax.distributed.initialize() when the environment says this is a multi-process job."""
    counts = [int(os.environ[v]) for v in _PROCESS_COUNT_VARS if os.environ.get(v)]
    if not counts or max(counts) <= 1:
        return False
    jax.distributed.initialize()
    return True


def make_mesh(mesh: config_dict.ConfigDict) -> jax.sharding.Mesh:
    """A (data, fsdp) mesh; mesh.data=-1 takes every device that fsdp leaves over."""
    n = jax.device_count()
    if mesh.fsdp < 1 or n % mesh.fsdp:
        raise ValueError(f"mesh.fsdp must be >= 1 and divide the {n} devices, got {mesh.fsdp}")
    data = n // mesh.fsdp if mesh.data == -1 else mesh.data
    if data < 1 or data * mesh.fsdp > n:
        raise ValueError(
            f"mesh.data must be -1 or in [1, {n // mesh.fsdp}] (mesh.fsdp={mesh.fsdp}, "
            f"{n} devices), got {mesh.data}"
        )
    if data * mesh.fsdp < n and jax.process_count() > 1:
        raise ValueError(
            f"a multi-process mesh must use all {n} devices; got mesh.data={mesh.data} x "
            f"mesh.fsdp={mesh.fsdp}"
        )
    # Auto axes: the compiler propagates shardings from the explicit in/out shardings of jit.
    return jax.make_mesh(
        (data, mesh.fsdp),
        (DATA, FSDP),
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=jax.devices()[: data * mesh.fsdp],
    )


def under_mesh(fn, mesh: jax.sharding.Mesh | None):
    """`fn` called with `mesh` as the context mesh (`jax.set_mesh`; None: `fn` itself)."""
    if mesh is None:
        return fn

    # Layers read it while tracing: TTTLayer shard_maps its fused kernel over the batch.
    def call(*args, **kwargs):
        with jax.set_mesh(mesh):
            return fn(*args, **kwargs)

    return call


def param_spec(shape: tuple[int, ...], fsdp_size: int) -> jax.P:
    """Shards the largest dimension divisible by the fsdp size over "fsdp"; replicates otherwise."""
    if fsdp_size > 1:
        divisible = [(d, i) for i, d in enumerate(shape) if d % fsdp_size == 0]
        if divisible:
            _, axis = max(divisible, key=lambda di: (di[0], -di[1]))
            return jax.P(*(FSDP if i == axis else None for i in range(len(shape))))
    return jax.P()


def tree_shardings(tree, mesh: jax.sharding.Mesh):
    """NamedShardings for a pytree of arrays (or ShapeDtypeStructs) under the FSDP rule; the
    leading depth axis of ModelConfig.scan_layers parameters is never split (the scan over
    depth slices it)."""

    def spec(path, x):
        if is_stacked(path) and len(x.shape) > 0:
            return jax.P(None, *param_spec(tuple(x.shape[1:]), mesh.shape[FSDP]))
        return param_spec(tuple(x.shape), mesh.shape[FSDP])

    return jax.tree_util.tree_map_with_path(lambda p, x: NamedSharding(mesh, spec(p, x)), tree)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Batch rows split over every device: the data axis and, as in FSDP, the fsdp axis."""
    return NamedSharding(mesh, jax.P((DATA, FSDP)))


def check_batch_size(batch_size: int, field: str, mesh: jax.sharding.Mesh) -> None:
    """Raises ValueError unless the batch splits evenly over the mesh's devices."""
    if batch_size < 1 or batch_size % mesh.size:
        raise ValueError(
            f"{field}={batch_size} must be a positive multiple of the {mesh.size} devices of the "
            f"mesh (data={mesh.shape[DATA]} x fsdp={mesh.shape[FSDP]})"
        )


def shard_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Global arrays from a batch that every process holds whole (each takes its own rows)."""
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
        for k, v in batch.items()
    }

"""Train/val/test splits by draw, the on-disk dataset format (docs/data.md), and its loader."""

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile

import numpy as np

from t3kan_jax.data.fields import FRACTION_FIELDS, SPLITS, check_fractions, config_fractions
from t3kan_jax.data.sequences import Sequences
from t3kan_jax.data.tasks import generate, task_config, task_of
from t3kan_jax.data.text import text_splits

FORMAT = "t3kan_jax.sequences"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = tuple(f.name for f in dataclasses.fields(Sequences))
_SPLIT_STREAM = 0x5B11  # Keeps the split permutation's random stream apart from the generator's.


def split_by_draw(
    seqs: Sequences, fractions=(0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, Sequences]:
    """Splits rows into train/val/test by a seeded permutation of whole draws, never of rows.

    Split i gets `round(fraction_i · draws)` draws (test takes the rest); rows keep their order.
    """
    fractions = check_fractions(fractions)
    draws = np.unique(seqs.draw)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(draws)
    n_train = round(fractions[0] * draws.size)
    n_val = min(round(fractions[1] * draws.size), draws.size - n_train)
    bounds = (0, n_train, n_train + n_val, draws.size)
    splits = {}
    for i, (name, field) in enumerate(zip(SPLITS, FRACTION_FIELDS, strict=True)):
        chosen = order[bounds[i] : bounds[i + 1]]
        if fractions[i] > 0 and chosen.size == 0:
            raise ValueError(
                f"{field}={fractions[i]} of {draws.size} draws is no draw at all: raise samples"
            )
        splits[name] = seqs.take(np.isin(seqs.draw, chosen))
    return splits


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _encode(splits: dict[str, Sequences]) -> dict[str, tuple[np.ndarray, bytes]]:
    """Each file: its array and its .npy bytes (the same arrays always give the same bytes)."""
    encoded = {}
    for name in SPLITS:
        for field in _ARRAYS:
            array = getattr(splits[name], field)
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            encoded[f"{name}/{field}.npy"] = (array, buffer.getvalue())
    return encoded


def _manifest(splits: dict[str, Sequences], config, encoded: dict) -> dict:
    if task_of(config) == "text":
        raise ValueError(
            "task='text': its rows are windows of the files at `path`, read at run time; "
            "there is no dataset to save"
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator_config": task_config(config),
        "split": dict(zip(FRACTION_FIELDS, config_fractions(config), strict=True)),
        "rows": {name: len(splits[name]) for name in SPLITS},
        "draws": {name: int(np.unique(splits[name].draw).size) for name in SPLITS},
        "files": {
            rel: {
                "sha256": hashlib.sha256(data).hexdigest(),
                "shape": list(array.shape),
                "dtype": str(array.dtype),
            }
            for rel, (array, data) in encoded.items()
        },
    }


def read_manifest(directory: str) -> dict:
    """The manifest of the dataset in `directory`, after checking its format and version."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no dataset manifest at {path}")
    with open(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format is not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version={manifest.get('format_version')!r} is unknown; "
            f"this loader reads format_version={FORMAT_VERSION}"
        )
    return manifest


def save_dataset(directory: str, splits: dict[str, Sequences], config) -> None:
    """Writes `splits` (made from data `config`) to `directory` with its manifest.

    Refuses (FileExistsError) a path that exists and is not an empty directory, unless it already
    holds this exact dataset, intact, in which case nothing is written. Files go to a temporary
    sibling directory first, then are renamed into place, so a crash leaves no half-written dataset.
    """
    directory = os.path.abspath(directory)
    encoded = _encode(splits)
    manifest = _manifest(splits, config, encoded)
    if os.path.exists(directory) and not (os.path.isdir(directory) and not os.listdir(directory)):
        _refuse_unless_same(directory, manifest)
        return
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        for rel, (_, data) in encoded.items():
            os.makedirs(os.path.join(staging, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(staging, rel), "wb") as f:
                f.write(data)
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_unless_same(directory: str, manifest: dict) -> None:
    try:
        existing = read_manifest(directory)
        load_dataset(directory)
    except (OSError, ValueError) as e:
        raise FileExistsError(
            f"{directory} is not empty and holds no intact dataset ({e}); "
            "refusing to write there: choose another directory or remove it"
        ) from e
    if existing != manifest:
        fields = ", ".join(sorted(k for k in manifest if existing.get(k) != manifest[k]))
        raise FileExistsError(
            f"{directory} already holds a different dataset (its {fields} differ); "
            "refusing to overwrite it: choose another directory or remove it"
        )


def load_dataset(directory: str) -> dict[str, Sequences]:
    """Loads the splits from `directory`, checking the manifest and every file's checksum."""
    manifest = read_manifest(directory)
    expected = {f"{name}/{field}.npy" for name in SPLITS for field in _ARRAYS}
    if set(manifest.get("files", {})) != expected:
        raise ValueError(f"{directory}/{MANIFEST}: files must be exactly {sorted(expected)}")
    arrays = {}
    for rel, meta in manifest["files"].items():
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: listed in the manifest but missing")
        if _sha256(path) != meta["sha256"]:
            raise ValueError(f"{path}: checksum mismatch (the file was truncated or edited)")
        array = np.load(path, allow_pickle=False)
        if list(array.shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
            raise ValueError(f"{path}: shape/dtype differ from the manifest")
        arrays[rel] = array
    splits = {
        name: Sequences(**{field: arrays[f"{name}/{field}.npy"] for field in _ARRAYS})
        for name in SPLITS
    }
    for name in SPLITS:
        if len(splits[name]) != manifest["rows"][name]:
            raise ValueError(f"{directory}/{MANIFEST}: rows[{name!r}] != rows in {name}/")
    return splits


def make_splits(data_config) -> dict[str, Sequences]:
    """The splits for a run: loaded from `data_config.dir` if set, else made in memory.

    Synthetic tasks are generated and split by draw; "text" windows its files (text.py). A loaded
    dataset must come from the same task fields and fractions as `data_config`.
    """
    task = task_of(data_config)
    directory = data_config.get("dir", "")
    if task == "text":
        if directory:
            raise ValueError(
                f"dir={directory!r}: task='text' reads its files from `path`; dir is for "
                "datasets that experiments.generate_data wrote"
            )
        return text_splits(data_config)
    generator = task_config(data_config)
    fractions = config_fractions(data_config)
    if not directory:
        return split_by_draw(generate(data_config), fractions, seed=generator["seed"])
    manifest = read_manifest(directory)
    # A manifest without `task` holds the sequence task (the only one when format 1 began).
    wanted = {
        "task": "sequences",
        **generator,
        **dict(zip(FRACTION_FIELDS, fractions, strict=True)),
    }
    stored = {"task": "sequences", **manifest["generator_config"], **manifest["split"]}
    differ = [
        f"{k}: config {wanted.get(k)!r} vs stored {stored.get(k)!r}"
        for k in [*wanted, *(k for k in stored if k not in wanted)]
        if wanted.get(k) != stored.get(k)
    ]
    if differ:
        raise ValueError(f"dir={directory}: the stored dataset differs from the config: {differ}")
    return load_dataset(directory)

"""Tests of the byte-level text task: windows, held-out tails, masks, bits per byte, bad files."""

import math
import pathlib
import tempfile

import chex
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.data import get_config
from t3kan_jax.data import (
    bits_per_byte,
    eval_batches,
    make_splits,
    save_dataset,
    text_splits,
    train_batch,
)
from t3kan_jax.data.dataset import FRACTION_FIELDS, SPLITS

_TEXT = "Zoology. Die Bären schlafen; 熊は眠る. " * 40  # Multi-byte UTF-8 characters too.


def text_config(path, **overrides):
    config = get_config("text")
    config.update({"path": str(path), "seq_len": 16, **overrides})
    return config


def parts_of(data: bytes, fractions) -> list[bytes]:
    """The train / val / test bytes of one file: its head, then its tail cut in two."""
    n = len(data)
    a = round(fractions[0] * n)
    b = min(n, a + round(fractions[1] * n))
    return [data[:a], data[a:b], data[b:]]


def check_windows(splits, files: list[bytes], seq_len: int, fractions):
    """Row by row, each split holds consecutive windows of its part of each file, file by file."""
    for index, name in enumerate(SPLITS):
        rows = splits[name]
        chex.assert_shape([rows.inputs, rows.targets], (len(rows), seq_len))
        start = 0
        for data in files:
            part = np.frombuffer(parts_of(data, fractions)[index], np.uint8)
            count = max(0, (part.size - 1) // seq_len)
            window = slice(start, start + count)
            np.testing.assert_array_equal(rows.inputs[window].ravel(), part[: count * seq_len])
            np.testing.assert_array_equal(
                rows.targets[window].ravel(), part[1 : count * seq_len + 1]
            )
            start += count
        assert start == len(rows)
        assert not rows.components.any()
    draws = np.concatenate([splits[name].draw for name in SPLITS])
    np.testing.assert_array_equal(draws, np.arange(draws.size))


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_characters="\0", codec="utf-8"), min_size=40, max_size=300),
        min_size=1,
        max_size=3,
    ),
    st.integers(1, 12),
    st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.3, 0.2), (0.6, 0.4, 0.0)]),
)
def test_rows_are_windows_of_each_files_parts(texts, seq_len, fractions):
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for i, text in enumerate(texts):
            files.append(text.encode("utf-8"))
            (pathlib.Path(directory) / f"{i:02d}.txt").write_bytes(files[-1])
        config = text_config(f"{directory}/*.txt", seq_len=seq_len)
        config.update(dict(zip(FRACTION_FIELDS, fractions, strict=True)))
        windows = [
            sum(max(0, (len(parts_of(f, fractions)[i]) - 1) // seq_len) for f in files)
            for i in range(3)
        ]
        empty = [f > 0 and w == 0 for f, w in zip(fractions, windows, strict=True)]
        if any(empty):  # A split that should have rows but whose parts are all too short.
            with pytest.raises(ValueError, match=f"^{FRACTION_FIELDS[empty.index(True)]}="):
                text_splits(config)
            return
        splits = text_splits(config)
    check_windows(splits, files, seq_len, fractions)


def test_make_splits_reads_a_glob_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    contents = {"b.txt": _TEXT, "a.txt": _TEXT[::-1], "sub/c.txt": _TEXT.upper()}
    for name, text in contents.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    splits = make_splits(text_config(tmp_path / "**" / "*.txt"))
    files = [contents[n].encode() for n in ("a.txt", "b.txt", "sub/c.txt")]
    check_windows(splits, files, 16, (0.8, 0.1, 0.1))
    assert all(len(splits[name]) for name in SPLITS)


def test_masks_cover_every_position(tmp_path):
    (tmp_path / "t.txt").write_text(_TEXT, encoding="utf-8")
    splits = make_splits(text_config(tmp_path / "t.txt"))
    batch = train_batch(splits["train"], 8, seed=0, step=5, pad_id=0)
    for key in ("mask", "determined_mask"):
        np.testing.assert_array_equal(batch[key], np.ones((8, 16)))
    np.testing.assert_array_equal(batch["last_mask"][:, -1], np.ones(8))
    assert batch["last_mask"].sum() == 8
    batches = list(eval_batches(splits["val"], 5, pad_id=0))
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.sum() == len(splits["val"]) * 16 and not masks[len(splits["val"]) :].any()


def test_bits_per_byte():
    assert bits_per_byte(math.log(256)) == pytest.approx(8.0, abs=1e-12)
    np.testing.assert_allclose(bits_per_byte(np.array([0.0, math.log(2)])), [0.0, 1.0])


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.txt", b"", r"empty\.txt is empty"),
        ("latin1.txt", "café".encode("latin-1") + b" and more", r"not UTF-8 .*0xe9 at offset 3"),
        ("nul.txt", b"abc\0def" * 10, r"NUL byte at offset 3"),
    ],
)
def test_bad_files_are_refused(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=match):
        make_splits(text_config(tmp_path / name))


def test_bad_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^path=.*missing\.txt'?: no such file"):
        make_splits(text_config(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"^path=.*: the glob matches no file"):
        make_splits(text_config(tmp_path / "*.md"))
    with pytest.raises(ValueError, match=r"^path=.* is a directory"):
        make_splits(text_config(tmp_path))
    with pytest.raises(ValueError, match=r"^path='': the text task needs"):
        make_splits(text_config(""))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"vocab_size": 128}, r"^vocab_size=128: .*must be 256"),
        ({"seq_len": 0}, r"^seq_len=0"),
        ({"pad_id": 3}, r"^pad_id=3"),
        ({"val_fraction": 0.3}, r"sum to 1"),
        ({"seq_len": 200}, r"^val_fraction=0\.1: the val parts .* hold no window of .* 201 bytes"),
    ],
)
def test_bad_fields_are_named(tmp_path, overrides, match):
    (tmp_path / "t.txt").write_text(_TEXT, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        make_splits(text_config(tmp_path / "t.txt", **overrides))


def test_text_is_never_saved_nor_loaded_from_dir(tmp_path):
    (tmp_path / "t.txt").write_text(_TEXT, encoding="utf-8")
    config = text_config(tmp_path / "t.txt")
    with pytest.raises(ValueError, match="no dataset to save"):
        save_dataset(str(tmp_path / "ds"), make_splits(config), config)
    assert not (tmp_path / "ds").exists()
    config.dir = str(tmp_path)
    with pytest.raises(ValueError, match="reads its files from `path`"):
        make_splits(config)

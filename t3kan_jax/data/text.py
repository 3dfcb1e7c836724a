"""Byte-level language modelling on local UTF-8 text files (`task = "text"`).

Tokens are bytes (`vocab_size` 256). Byte 0 is the pad id, so a file holding a NUL byte is
refused: then no real target equals the pad, and `mask` is 1 at every position of every row.

`path` is a file or a glob (`**` recurses); the matched files are read in sorted order. Each file
of `n` bytes is cut into three parts, train `[0, a)`, val `[a, b)` and test `[b, n)`, with
`a = round(train_fraction·n)` and `b = min(n, a + round(val_fraction·n))`: validation and test
are the file's held-out tail. Each part is cut into windows of `seq_len + 1` bytes at stride
`seq_len`: a window at byte `s` gives `inputs = bytes[s : s+L]` and `targets = bytes[s+1 : s+L+1]`,
so within a part every byte after its first is a target exactly once (the last `<= L` bytes of a
part are dropped). No window crosses a part or a file. `draw` numbers the windows (train first,
then val, then test) and `components` is 0. There is no randomness: `samples` and `seed` are unused.
"""

import glob
import math
import numbers
import os

import numpy as np

from t3kan_jax.data.fields import (
    FRACTION_FIELDS,
    SPLITS,
    check_fractions,
    config_fractions,
    field,
    int_field,
    zero_pad_id,
)
from t3kan_jax.data.sequences import Sequences

TEXT_FIELDS = ("vocab_size", "pad_id", "path", "seq_len")
_GLOB_CHARS = "*?["


def bits_per_byte(loss_nats):
    """Mean cross-entropy in nats per byte token, as bits per byte (loss / ln 2)."""
    return loss_nats / math.log(2)


def validate_text_config(config) -> dict:
    """Checks the text fields of `config` (the files are checked when read)."""
    vocab_size = field(config, "vocab_size")
    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, numbers.Integral)
        or vocab_size != 256
    ):
        raise ValueError(
            f"vocab_size={vocab_size!r}: the text task's tokens are bytes: must be 256"
        )
    path = field(config, "path")
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"path={path!r}: the text task needs a UTF-8 text file or a glob of them "
            "(e.g. --config.path='corpus/*.txt')"
        )
    return {
        "vocab_size": 256,
        "pad_id": zero_pad_id(config, "a text holding byte 0 is refused"),
        "path": path,
        "seq_len": int_field(config, "seq_len", 1),
    }


def text_files(path: str) -> list[str]:
    """The files that `path` (a file or a glob) names, sorted."""
    pattern = os.path.expanduser(path)
    if any(c in pattern for c in _GLOB_CHARS):
        files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise ValueError(f"path={path!r}: the glob matches no file")
        return files
    if os.path.isdir(pattern):
        raise ValueError(
            f"path={path!r} is a directory: give a file or a glob such as "
            f"{os.path.join(path, '*.txt')!r}"
        )
    if not os.path.isfile(pattern):
        raise ValueError(f"path={path!r}: no such file")
    return [pattern]


def read_text_bytes(filename: str) -> np.ndarray:
    """The bytes of one file as uint8, after checking it is non-empty UTF-8 without NUL."""
    with open(filename, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"path: {filename} is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"path: {filename} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}: {e.reason})"
        ) from e
    nul = data.find(b"\0")
    if nul >= 0:
        raise ValueError(
            f"path: {filename} holds a NUL byte at offset {nul}; byte 0 is the pad id, "
            "so the text task refuses it"
        )
    return np.frombuffer(data, np.uint8)


def windows(part: np.ndarray, seq_len: int) -> np.ndarray:
    """The windows [W, seq_len + 1] of `part` at stride `seq_len`."""
    count = max(0, (part.size - 1) // seq_len)
    starts = np.arange(count)[:, None] * seq_len
    return part[starts + np.arange(seq_len + 1)]


def text_splits(config) -> dict[str, Sequences]:
    """The train/val/test windows of the files that `config.path` names (module docstring)."""
    cfg = validate_text_config(config)
    fractions = check_fractions(config_fractions(config))
    seq_len, files = cfg["seq_len"], text_files(cfg["path"])
    parts = {name: [] for name in SPLITS}
    total = 0
    for filename in files:
        data = read_text_bytes(filename)
        n = data.size
        total += n
        a = round(fractions[0] * n)
        b = min(n, a + round(fractions[1] * n))
        for name, (lo, hi) in zip(SPLITS, ((0, a), (a, b), (b, n)), strict=True):
            parts[name].append(windows(data[lo:hi], seq_len).astype(np.int32))
    splits, first = {}, 0
    for name, fraction_field, fraction in zip(SPLITS, FRACTION_FIELDS, fractions, strict=True):
        rows = np.concatenate(parts[name])
        if fraction > 0 and not rows.shape[0]:
            raise ValueError(
                f"{fraction_field}={fraction}: the {name} parts of the text ({total} bytes in "
                f"{len(files)} files) hold no window of seq_len + 1 = {seq_len + 1} bytes: "
                "lower seq_len or add text"
            )
        count = rows.shape[0]
        splits[name] = Sequences(
            inputs=np.ascontiguousarray(rows[:, :-1]),
            targets=np.ascontiguousarray(rows[:, 1:]),
            draw=np.arange(first, first + count, dtype=np.int32),
            components=np.zeros(count, np.int32),
        )
        first += count
    return splits

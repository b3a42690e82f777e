"""Weight-tile codecs: exact round trips, sizes, auto choice, corrupted blobs, layer tiling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.errors import CompressionError
from approxtvm.targets.vacc.compression import (
    ENCODINGS,
    best_encoding,
    compress_layer,
    decode,
    decompress_layer,
    describe,
    encode,
    encode_tile,
    encoded_sizes,
    tile_slices,
)

DTYPES = (np.uint8, np.int8)


@st.composite
def tiles(draw: st.DrawFn, max_size: int = 700) -> tuple[np.ndarray, int]:
    """A random tile and zero code: mixes of zero runs, few or many distinct values, any shape."""
    dtype = draw(st.sampled_from(DTYPES))
    info = np.iinfo(dtype)
    zero = draw(st.one_of(st.just(0), st.integers(int(info.min), int(info.max))))
    n = draw(st.integers(0, max_size))
    density = draw(st.sampled_from([0.0, 0.03, 0.2, 0.5, 0.9, 1.0]))
    n_values = draw(st.sampled_from([1, 2, 3, 16, 17, 256]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(int(info.min), int(info.max) + 1, size=n_values)
    codes = np.where(rng.random(n) < density, rng.choice(values, size=n), zero).astype(dtype)
    shape = draw(st.sampled_from([(n,), (1, n), (n, 1)]))
    return codes.reshape(shape), zero


def _adversarial() -> list[tuple[str, np.ndarray, int]]:
    z = 128
    run = lambda k: [z] * k  # noqa: E731
    cases = [
        ("all zeros", np.full(1000, z), z),
        ("no zeros", np.arange(1000) % 255 + 129, z),
        ("one value", np.full(333, 7), z),
        ("single zero", np.array([z]), z),
        ("single non-zero", np.array([3]), z),
        ("empty", np.zeros(0), z),
        ("run of exactly 15", np.array([1, *run(15), 2]), z),
        ("run of 16 (max + 1)", np.array([1, *run(16), 2]), z),
        ("run of 31 and 32", np.array([*run(31), 1, *run(32), 2, *run(33)]), z),
        ("leading/trailing runs", np.array([*run(100), 5, *run(100)]), z),
        ("zero_code 0 uint8", np.array([0, 0, 0, 1, 0, 255, 0]), 0),
        ("zero_code 255", np.array([255, 255, 0, 1, 255]), 255),
    ]
    out = [(name, np.asarray(a).astype(np.uint8), zc) for name, a, zc in cases]
    out += [
        ("int8 symmetric", np.array([0, 0, -128, 127, 0, 0, 0, -1], dtype=np.int8), 0),
        ("int8 zero -128", np.array([-128] * 40 + [5, -128, 127], dtype=np.int8), -128),
    ]
    return out


@pytest.mark.parametrize("mode", [*ENCODINGS, "auto"])
@given(case=tiles())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_is_exact_and_sizes_match(mode: str, case: tuple[np.ndarray, int]) -> None:
    tile, zero = case
    enc = encode_tile(tile, zero, mode)
    out = decode(enc.blob, tile.dtype)
    assert out.dtype == tile.dtype
    np.testing.assert_array_equal(out, tile.reshape(-1))
    assert enc.total_bytes == len(enc.blob) == enc.payload_bytes + enc.metadata_bytes
    assert describe(enc.blob)["num_weights"] == tile.size
    sizes = encoded_sizes(tile, zero)
    if mode != "auto":
        assert sizes[mode] == enc.total_bytes
    else:
        assert enc.total_bytes == min(sizes.values()) <= sizes["dense"]


@pytest.mark.parametrize(("name", "tile", "zero"), _adversarial(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("mode", [*ENCODINGS, "auto"])
def test_adversarial_round_trips(name: str, tile: np.ndarray, zero: int, mode: str) -> None:
    for run_bits in (1, 4, 8):
        blob = encode(tile, zero, mode, run_bits=run_bits)
        np.testing.assert_array_equal(decode(blob, tile.dtype), tile)


def test_rle_splits_runs_longer_than_the_field() -> None:
    tile = np.array([1, *[0] * 16, 2], dtype=np.uint8)
    # 16 zeros with a 4-bit run field: one filler pair (15 zeros + an explicit zero), then (0, 2)
    assert describe(encode(tile, 0, "rle"))["pairs"] == 3
    assert describe(encode(tile, 0, "rle", run_bits=5))["pairs"] == 2
    # trailing zeros are implied
    assert describe(encode(np.array([3, 0, 0, 0], dtype=np.uint8), 0, "rle"))["pairs"] == 1


def test_known_sizes_of_a_sparse_tile() -> None:
    tile = np.zeros(64, dtype=np.uint8) + 128
    tile[[3, 40]] = [7, 9]
    sizes = encoded_sizes(tile, 128)
    header = 2  # id byte + 1-byte varint count
    assert sizes["dense"] == header + 64
    assert sizes["bitmask"] == header + 1 + 8 + 2
    # zero, run_bits, pair count; (3, 7), two fillers for the 36-zero run, (4, 9): 4 × 12 bits
    assert sizes["rle"] == header + 3 + 6
    assert sizes["codebook"] == header + 1 + 4 + 16  # 3 values → 2-bit indices
    assert sizes["codebook_bitmask"] == header + 2 + 8 + 2 + 1
    assert encode_tile(tile, 128).encoding == "rle"


def test_forced_codebook_with_too_many_values_is_a_clear_error() -> None:
    tile = np.arange(20, dtype=np.uint8)
    with pytest.raises(CompressionError, match="too many distinct values") as err:
        encode(tile, 0, "codebook", codebook_bits=4)
    assert "at most 16" in str(err.value)
    assert best_encoding(tile, 0, codebook_bits=4).encoding in ("dense", "bitmask", "rle")
    with pytest.raises(CompressionError, match="unknown encoding"):
        encode(tile, 0, "huffman")
    with pytest.raises(CompressionError, match="element type"):
        encode(tile.astype(np.int16), 0)
    with pytest.raises(CompressionError, match="zero_code"):
        encode(tile, 300)


@given(case=tiles(max_size=300), mode=st.sampled_from(ENCODINGS), data=st.data())
@settings(max_examples=100, deadline=None)
def test_truncated_or_extended_blobs_raise(case: tuple[np.ndarray, int], mode: str, data: st.DataObject) -> None:
    tile, zero = case
    blob = encode(tile, zero, mode)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(CompressionError):
        decode(blob[:cut])
    with pytest.raises(CompressionError):
        decode(blob + b"\x00")


@given(case=tiles(max_size=300), mode=st.sampled_from(ENCODINGS), data=st.data())
@settings(max_examples=150, deadline=None)
def test_corrupted_blobs_raise_compression_error_or_decode(
    case: tuple[np.ndarray, int], mode: str, data: st.DataObject
) -> None:
    tile, zero = case
    blob = bytearray(encode(tile, zero, mode))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    try:
        out = decode(bytes(blob))
    except CompressionError:
        return
    assert out.dtype in (np.uint8, np.int8) and out.ndim == 1


def test_error_message_names_expected_payload() -> None:
    blob = encode(np.arange(4096, dtype=np.uint8) % 7 + 1, 0, "codebook")  # 3-bit indices
    msg = "header says 4096 weights, payload has 1200 bytes, expected 1544"
    with pytest.raises(CompressionError, match=msg):
        decode(blob[: len(blob) - (1544 - 1200)])
    with pytest.raises(CompressionError, match="another type"):
        decode(blob, np.int8)
    with pytest.raises(CompressionError, match="ends before the header"):
        decode(b"")
    assert decode(blob, shape=(64, 64)).shape == (64, 64)
    with pytest.raises(CompressionError, match="requested shape"):
        decode(blob, shape=(64, 63))
    with pytest.raises(CompressionError, match="not bytes"):
        decode("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [*ENCODINGS, "auto"])
def test_compress_layer_round_trip_with_tile_shape_and_slices(mode: str) -> None:
    rng = np.random.default_rng(1)
    w = np.where(rng.random((70, 8, 3, 3)) < 0.6, 128, rng.integers(120, 136, (70, 8, 3, 3))).astype(np.uint8)
    c = compress_layer(w, (32, 8, 3, 3), 128, mode)
    assert len(c.tiles) == 3 and c.tiles[-1][0] == slice(64, 70)
    np.testing.assert_array_equal(decompress_layer(c), w)
    assert c.dense_bytes == w.size and c.total_bytes == sum(c.tile_bytes)
    assert c.footprint_ratio == pytest.approx(c.total_bytes / w.size)
    assert c.total_bytes == c.payload_bytes + c.metadata_bytes
    # explicit slices, in any order, covering the array exactly once
    sl = [(slice(35, 70), slice(0, 4)), (slice(0, 35),), (slice(35, 70), slice(4, 8))]
    c2 = compress_layer(w, sl, 128, mode)
    np.testing.assert_array_equal(decompress_layer(c2), w)
    if mode == "auto":
        assert c.footprint_ratio < 1.0
        assert all(e == "codebook_bitmask" for e in c.tile_encodings)


def test_compress_layer_rejects_bad_tilings() -> None:
    w = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(CompressionError, match="exactly once"):
        compress_layer(w, [(slice(0, 2),)], 0)
    with pytest.raises(CompressionError, match="exactly once"):
        compress_layer(w, [(slice(0, 3),), (slice(2, 4),)], 0)
    with pytest.raises(CompressionError, match="strided"):
        compress_layer(w, [(slice(0, 4, 2),)], 0)
    with pytest.raises(CompressionError, match="tile shape"):
        compress_layer(w, (2,), 0)
    assert len(tile_slices((5, 3), (2, 3))) == 3


def test_int8_layer_round_trip() -> None:
    rng = np.random.default_rng(2)
    w = np.where(rng.random((16, 40)) < 0.8, 0, rng.integers(-128, 128, (16, 40))).astype(np.int8)
    c = compress_layer(w, (4, 40), 0)
    assert c.dtype == "int8"
    np.testing.assert_array_equal(decompress_layer(c), w)

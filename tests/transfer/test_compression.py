"""The automatic compression choice, fed with measured rates."""

from __future__ import annotations

import os

import zstandard

from virtsdk.transfer.sender import CompressionChooser

TEXT = b"".join(b"%08d some log line that compresses well\n" % i for i in range(30000))


def _chooser(link_bps: float) -> CompressionChooser:
    chooser = CompressionChooser("auto", 1)
    chooser.observe_link(1 << 20, (1 << 20) / link_bps)
    return chooser


def test_slow_link_and_compressible_data_compresses():
    chooser = _chooser(10e6)  # 10 MB/s: compressing is far faster than the link
    cctx = zstandard.ZstdCompressor(level=1)
    out = chooser.maybe_compress(memoryview(TEXT), cctx)
    assert out is not None and len(out) < len(TEXT) / 3
    assert zstandard.ZstdDecompressor().decompress(out, max_output_size=len(TEXT)) == TEXT


def test_random_data_is_sent_raw_even_on_a_slow_link():
    chooser = _chooser(10e6)
    cctx = zstandard.ZstdCompressor(level=1)
    data = memoryview(os.urandom(1 << 20))
    assert chooser.maybe_compress(data, cctx) is None
    assert chooser.ratio > 0.95
    assert all(chooser.maybe_compress(data, cctx) is None for _ in range(40))


def test_link_faster_than_compression_sends_raw():
    chooser = _chooser(1e12)  # a link no compressor can keep up with
    cctx = zstandard.ZstdCompressor(level=1)
    chooser.maybe_compress(memoryview(TEXT), cctx)  # the probe measures zstd
    assert chooser.comp_bps < 1e12
    assert chooser.maybe_compress(memoryview(TEXT), cctx) is None


def test_on_and_off_are_obeyed():
    cctx = zstandard.ZstdCompressor(level=1)
    data = memoryview(os.urandom(1 << 20))
    assert CompressionChooser("on", 1).maybe_compress(data, cctx) is not None
    assert CompressionChooser("off", 1).maybe_compress(memoryview(TEXT), cctx) is None

"""Bytes on the wire as a socket may deliver them: cut into reads at arbitrary points."""

from __future__ import annotations


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at each point of ``cuts`` (taken modulo its length + 1); empty pieces included."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces

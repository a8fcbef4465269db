"""A minimal PNG writer and reader (8-bit RGB/grey, no interlace) on the standard library.

Enough to write frames and strips a person can look at, and to read back the files this module
writes (tests use the round trip). Stateless and thread-safe.
"""

import struct
import zlib

import numpy as np


def _chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(img, level=6):
    """PNG bytes of a uint8 image [H,W,3] (RGB) or [H,W] (grey)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError("PNG image must be uint8, got %s" % a.dtype)
    if a.ndim == 2:
        colour_type, channels = 0, 1
    elif a.ndim == 3 and a.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError("PNG image must be [H,W] or [H,W,3], got shape %s" % (a.shape,))
    h, w = a.shape[:2]
    if h < 1 or w < 1:
        raise ValueError("PNG image must not be empty")
    rows = np.ascontiguousarray(a).reshape(h, w * channels)
    raw = np.zeros((h, w * channels + 1), np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = rows
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) +
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


def write_png(path, img, level=6):
    with open(path, "wb") as f:
        f.write(encode_png(img, level))


def decode_png(data):
    """Decode PNG bytes written by encode_png (8-bit RGB or grey; all five row filters)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, hdr = 8, [], None
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if len(body) != n:
            raise ValueError("truncated PNG chunk %r" % tag)
        pos += 12 + n
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if hdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (0, 2) or interlace:
        raise ValueError("only 8-bit grey/RGB non-interlaced PNGs are supported")
    ch = 3 if ctype == 2 else 1
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * ch + 1)
    out = np.zeros((h, w * ch), np.int32)
    prev = np.zeros(w * ch, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average, Paeth depend on the left neighbour: go byte by byte
            cur = np.zeros_like(line)
            for x in range(w * ch):
                a = cur[x - ch] if x >= ch else 0
                b = prev[x]
                c = prev[x - ch] if x >= ch else 0
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) >> 1
                elif f == 4:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                else:
                    raise ValueError("bad PNG filter %d" % f)
                cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    img = out.astype(np.uint8)
    return img.reshape(h, w, 3) if ch == 3 else img

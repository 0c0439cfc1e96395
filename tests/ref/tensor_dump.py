"""Reader of the tensor dumps the C test programs write (format in tests/parity_dump.c)."""
import struct

import numpy as np


def read(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"RPXTDUMP":
        raise ValueError(f"{path}: not a ropex tensor dump (magic {data[:8]!r})")
    version, count = struct.unpack_from("<II", data, 8)
    if version != 1:
        raise ValueError(f"{path}: dump version {version}, expected 1")
    off = 16
    for _ in range(count):
        (nl,) = struct.unpack_from("<I", data, off); off += 4
        name = data[off:off + nl].decode(); off += nl
        dtype, ndim = struct.unpack_from("<II", data, off); off += 8
        dims = struct.unpack_from(f"<{ndim}q", data, off); off += 8 * ndim
        n = int(np.prod(dims)) if ndim else 1
        dt = {0: np.float32, 1: np.int32}[dtype]
        out[name] = np.frombuffer(data, dtype=dt, count=n, offset=off).reshape(dims).copy()
        off += 4 * n
    if off != len(data):
        raise ValueError(f"{path}: {len(data) - off} trailing bytes")
    return out

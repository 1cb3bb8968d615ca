"""Decimated copies of the packaged visual meshes, generated once and cached outside the repository.

The Menagerie UR5e + 2F-85 visual meshes total about 185k triangles; on a software renderer (Mesa
llvmpipe) that alone caps a policy camera at about 38 fps whatever the resolution. The scene
builder swaps each *visual* geom's mesh for a decimated copy (collision geoms keep the originals,
so physics is unchanged).

Cache layout: ``$VLA_CACHE_DIR/meshes/<key>/mesh.npz`` (default ``~/.cache/vla-stack``), where
``<key>`` hashes the source file bytes, the target face count and :data:`LOD_VERSION`. Files are
written to a temporary name and renamed, so concurrent processes never read a partial file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

# Bump when the decimation recipe changes so stale cache entries are not reused.
LOD_VERSION = 4


def cache_dir() -> Path:
    """Root of the vla-stack cache (``$VLA_CACHE_DIR`` or ``~/.cache/vla-stack``)."""
    root = os.environ.get("VLA_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "vla-stack"


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an OBJ or binary STL triangle mesh: vertices ``(V, 3)`` float64, faces ``(F, 3)`` int64.

    Duplicate vertices (the Menagerie OBJ files store one copy per face corner) are welded so the
    simplifier sees a connected surface.
    """
    suffix = path.suffix.lower()
    if suffix == ".obj":
        verts, faces = _read_obj(path)
    elif suffix == ".stl":
        verts, faces = _read_stl(path)
    else:
        raise ValueError(f"{path}: unsupported mesh format {suffix!r} (expected .obj or .stl)")
    return _weld(verts, faces)


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    with path.open() as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                # Fan-triangulate polygons.
                faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    if not verts or not faces:
        raise ValueError(f"{path}: OBJ file has no vertices or faces")
    return np.asarray(verts, np.float64), np.asarray(faces, np.int64)


def _read_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) < 84:
        raise ValueError(f"{path}: too short to be a binary STL")
    n = int(np.frombuffer(raw, np.uint32, 1, 80)[0])
    if len(raw) != 84 + 50 * n:
        raise ValueError(f"{path}: not a binary STL (size {len(raw)} != 84 + 50 * {n})")
    rec = np.frombuffer(raw, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), n, 84)
    verts = rec["v"].reshape(-1, 3).astype(np.float64)
    return verts, np.arange(3 * n, dtype=np.int64).reshape(n, 3)


def _weld(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    key = np.round(verts, 7)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return uniq, faces[keep]


def decimate(verts: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation to about ``target_faces`` triangles (no-op when already smaller)."""
    import fast_simplification  # imported lazily: only needed when the cache is cold

    if len(faces) <= target_faces:
        return verts, faces
    # The simplifier's stopping threshold is an absolute quadric error, so a mesh in millimetres
    # (the 2F-85 STLs) barely decimates: normalize to a unit box first, then scale back. CAD meshes
    # full of sliver triangles still stall it, so snap vertices to a fine grid first (0.5% of the
    # part's size, then 1% if that is not enough) to merge the slivers.
    centre = 0.5 * (verts.min(0) + verts.max(0))
    size = float(np.max(verts.max(0) - verts.min(0))) or 1.0
    unit = (verts - centre) / size
    best: tuple[np.ndarray, np.ndarray] | None = None
    for cells in (200, 100):
        v, f = _weld(np.round(unit * cells) / cells, faces)
        v, f = fast_simplification.simplify(v, f.astype(np.int64), target_count=min(target_faces, len(f)))
        if best is None or len(f) < len(best[1]):
            best = (np.asarray(v, np.float64), np.asarray(f, np.int64))
        if len(best[1]) <= 1.5 * target_faces:
            break
    # Quadric-optimal vertices can overshoot thin features by a few percent: keep them in the
    # original bounding box so a decimated part never pokes out of where the real one is.
    return np.clip(best[0] * size + centre, verts.min(0), verts.max(0)), best[1]


def lod_mesh(path: Path, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimated mesh for ``path`` (cached): vertices ``(V, 3)`` float32, faces ``(F, 3)`` int32."""
    path = Path(path)
    h = hashlib.sha256(path.read_bytes())
    h.update(f"target={target_faces};v={LOD_VERSION}".encode())
    entry = cache_dir() / "meshes" / h.hexdigest()[:24]
    npz = entry / "mesh.npz"
    if npz.is_file():
        with np.load(npz) as z:
            return z["vert"], z["face"]
    verts, faces = read_mesh(path)
    verts, faces = decimate(verts, faces, target_faces)
    verts32, faces32 = verts.astype(np.float32), faces.astype(np.int32)
    entry.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=entry, prefix=".mesh-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, vert=verts32, face=faces32, source=np.array(str(path.name)))
        os.replace(tmp, npz)  # atomic on POSIX: readers see the old state or the whole file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return verts32, faces32

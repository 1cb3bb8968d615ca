"""Statistics and the Normalizer: exact values, numpy/torch parity, serialization, missing stats raise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import make_episode
from safetensors.numpy import load_file, save_file

from vla.data import DatasetError, MissingStatsError, Normalizer, ReplayBuffer, compute_stats


def test_compute_stats_matches_numpy(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    stats = compute_stats(ReplayBuffer.open(path))
    assert sorted(stats) == ["action", "qvel", "state"]  # images are left to the encoder
    for k in stats:
        x = np.concatenate([ep[k] for ep in eps]).astype(np.float64)
        np.testing.assert_array_equal(stats[k]["min"], x.min(0).astype(np.float32))
        np.testing.assert_array_equal(stats[k]["max"], x.max(0).astype(np.float32))
        np.testing.assert_allclose(stats[k]["mean"], x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(stats[k]["std"], x.std(0), rtol=1e-6)
    sub = compute_stats(ReplayBuffer.open(path), keys=["state"], episodes=[1])
    np.testing.assert_allclose(sub["state"]["mean"], eps[1]["state"].mean(0), rtol=1e-5)


def test_min_max_and_mean_std_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 3)) * [1.0, 10.0, 0.0] + [0.0, 5.0, 2.0]).astype(np.float32)  # dim 2 constant
    stats = {
        "a": {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)},
    }
    mm = Normalizer(stats, {"a": "min_max"})
    y = mm.normalize("a", x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:, :2].min(0), -1, atol=1e-6)
    np.testing.assert_allclose(y[:, :2].max(0), 1, atol=1e-6)
    np.testing.assert_array_equal(y[:, 2], 0)  # constant dim maps to the centre, not to inf
    np.testing.assert_allclose(mm.unnormalize("a", y), x, atol=1e-5)

    ms = Normalizer(stats, {"a": "mean_std"})
    z = ms.normalize("a", x)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)

    t = torch.from_numpy(x).reshape(5, 10, 3)  # (B, T, D)
    for norm in (mm, ms):
        yt = norm.normalize("a", t)
        assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32 and yt.shape == (5, 10, 3)
        np.testing.assert_allclose(yt.reshape(50, 3).numpy(), norm.normalize("a", x), atol=1e-6)
        torch.testing.assert_close(norm.unnormalize("a", yt), t, atol=1e-5, rtol=1e-5)
    assert Normalizer(stats, {"a": "identity"}).normalize("a", x) is x


def test_missing_stats_raise_naming_the_key() -> None:
    stats = {"state": {"min": np.zeros(2), "max": np.ones(2)}}
    norm = Normalizer(stats, {"state": "min_max"})
    with pytest.raises(MissingStatsError, match=r"key 'action'.*statistics exist for \['state'\]"):
        norm.normalize("action", np.zeros(2))
    with pytest.raises(MissingStatsError, match=r"key 'action'"):
        norm.unnormalize("action", torch.zeros(2))
    with pytest.raises(MissingStatsError, match=r"key 'action' \(mode 'min_max'\) needs statistics"):
        Normalizer(stats, {"state": "min_max", "action": "min_max"})
    with pytest.raises(MissingStatsError, match=r"needs statistics \['mean', 'std'\].*has \['max', 'min'\]"):
        Normalizer(stats, {"state": "mean_std"})
    with pytest.raises(ValueError, match="unknown mode 'zscore'"):
        Normalizer(stats, {"state": "zscore"})


def test_state_dict_json_and_safetensors_round_trip(tmp_path: Path) -> None:
    stats = {
        "state": {"min": np.arange(7, dtype=np.float32), "max": np.arange(7, dtype=np.float32) + 2},
        "action": {"mean": np.ones(7, np.float32), "std": np.full(7, 0.5, np.float32)},
    }
    norm = Normalizer(stats, {"state": "min_max", "action": "mean_std"})
    x = np.linspace(-3, 3, 14, dtype=np.float32).reshape(2, 7)
    again = Normalizer.from_state_dict(json.loads(json.dumps(norm.state_dict())))
    np.testing.assert_array_equal(again.normalize("state", x), norm.normalize("state", x))
    tensors, metadata = norm.to_tensors()
    save_file(tensors, str(tmp_path / "norm.safetensors"), metadata=metadata)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "norm.safetensors"), "np") as f:
        md = f.metadata()
    loaded = Normalizer.from_tensors(load_file(str(tmp_path / "norm.safetensors")), md)
    assert loaded.modes == norm.modes
    np.testing.assert_array_equal(loaded.normalize("action", x), norm.normalize("action", x))


def test_stats_stored_in_the_dataset(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path, mode="a")
    with pytest.raises(MissingStatsError, match=r"small\.zarr/stats: no normalization statistics stored"):
        rb.load_stats()
    stats = compute_stats(rb, keys=["state", "action"])
    rb.save_stats(stats)
    loaded = ReplayBuffer.open(path).load_stats()
    for k in stats:
        for n in stats[k]:
            np.testing.assert_array_equal(loaded[k][n], stats[k][n])
    rb.add_episode(make_episode(4, 3), instruction="more")
    with pytest.raises(
        DatasetError, match=r"stats: n_frames: statistics cover 18 frames but the store has 21"
    ):
        ReplayBuffer.open(path).load_stats()
    assert sorted(ReplayBuffer.open(path).load_stats(allow_stale=True)) == ["action", "state"]


def test_statistics_refuse_non_finite_values(small_store: tuple[Path, list[dict]]) -> None:
    import zarr

    path, _ = small_store
    zarr.open_array(str(path / "data/qvel"), mode="r+")[3, 5] = np.inf  # episode 0, step 3
    rb = ReplayBuffer.open(path)
    assert sorted(compute_stats(rb, keys=["state", "action"])) == ["action", "state"]
    with pytest.raises(
        DatasetError,
        match=r"small\.zarr/data/qvel: non-finite value \(inf\) at frame 3 \(step 3 of episode 0\)",
    ):
        compute_stats(rb)
    assert sorted(compute_stats(rb, keys=["qvel"], episodes=[1, 2])) == ["qvel"]  # episode 0 left out


def test_unreadable_stats_metadata_is_named(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path, mode="a")
    rb.save_stats(compute_stats(rb, keys=["state"]))
    (path / "stats/zarr.json").write_text("{")
    with pytest.raises(DatasetError, match=r"small\.zarr/stats/zarr\.json: unreadable zarr metadata"):
        ReplayBuffer.open(path).load_stats()
    # Saving again replaces the unreadable group (statistics are derived data).
    ReplayBuffer.open(path, mode="a").save_stats(compute_stats(rb, keys=["state"]))
    assert sorted(ReplayBuffer.open(path).load_stats()) == ["state"]

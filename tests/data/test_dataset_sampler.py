"""SequenceDataset windows and padding against hand-computed indices; DataLoader with workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vla.data import (
    MissingStatsError,
    Normalizer,
    ReplayBuffer,
    SequenceDataset,
    compute_stats,
    split_episodes,
    window_indices,
)

# small_store: episodes of 5, 9, 4 frames starting at global frames 0, 5, 14.
STARTS = (0, 5, 14)


@pytest.mark.parametrize(
    ("length", "t", "To", "T", "expected"),
    [
        (5, 0, 2, 4, [0, 0, 1, 2]),  # frame -1 padded with frame 0
        (5, 1, 2, 4, [0, 1, 2, 3]),
        (5, 3, 2, 4, [2, 3, 4, 4]),  # frame 5 padded with the last frame
        (5, 4, 2, 4, [3, 4, 4, 4]),
        (4, 0, 3, 6, [0, 0, 0, 1, 2, 3]),
        (4, 3, 3, 6, [1, 2, 3, 3, 3, 3]),
        (9, 4, 1, 3, [4, 5, 6]),
        (1, 0, 2, 4, [0, 0, 0, 0]),  # one-frame episode: everything repeats
    ],
)
def test_window_indices_hand_computed(length: int, t: int, To: int, T: int, expected: list[int]) -> None:
    assert window_indices(length, t, To, T).tolist() == expected


def test_samples_match_hand_computed_frames(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = ReplayBuffer.open(path)
    ds = SequenceDataset(rb, obs_keys=["image_front", "state"], action_key="action", n_obs_steps=2, horizon=4)
    assert len(ds) == 18  # one sample per frame of every episode
    assert [ds.sample_index(i) for i in (0, 4, 5, 13, 14, 17)] == [
        (0, 0),
        (0, 4),
        (1, 0),
        (1, 8),
        (2, 0),
        (2, 3),
    ]

    s = ds[5]  # episode 1, t = 0: window frames -1..2 -> [0, 0, 1, 2]
    assert (s["episode"], s["t"]) == (1, 0)
    assert np.array_equal(s["image_front"], eps[1]["image_front"][[0, 0]])
    assert np.array_equal(s["state"], eps[1]["state"][[0, 0]])
    assert np.array_equal(s["action"], eps[1]["action"][[0, 0, 1, 2]])

    s = ds[13]  # episode 1, t = 8 (last frame): window frames 7..10 -> [7, 8, 8, 8]
    assert np.array_equal(s["image_front"], eps[1]["image_front"][[7, 8]])
    assert np.array_equal(s["action"], eps[1]["action"][[7, 8, 8, 8]])

    s = ds[16]  # episode 2, t = 2: frames 1..4 -> [1, 2, 3, 3]
    assert np.array_equal(s["state"], eps[2]["state"][[1, 2]])
    assert np.array_equal(s["action"], eps[2]["action"][[1, 2, 3, 3]])

    # Every sample, against a direct clamp written independently of window_indices.
    for i in range(len(ds)):
        e, t = ds.sample_index(i)
        L = len(eps[e]["state"])
        frames = [min(max(f, 0), L - 1) for f in range(t - 1, t + 3)]
        s = ds[i]
        assert np.array_equal(s["action"], eps[e]["action"][frames])
        assert np.array_equal(s["image_front"], eps[e]["image_front"][frames[:2]])
        assert s["state"].dtype == np.float32 and s["image_front"].dtype == np.uint8


def test_episode_subset_and_uncached_path_agree(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path)
    a = SequenceDataset(rb, ["state"], n_obs_steps=3, horizon=5, episodes=[2, 0])
    b = SequenceDataset(rb, ["state"], n_obs_steps=3, horizon=5, episodes=[2, 0], cache_lowdim=False)
    assert len(a) == 4 + 5 and a.sample_index(0) == (2, 0) and a.sample_index(4) == (0, 0)
    for i in range(len(a)):
        assert np.array_equal(a[i]["action"], b[i]["action"])
        assert np.array_equal(a[i]["state"], b[i]["state"])
    with pytest.raises(IndexError, match="episode 7 out of range"):
        SequenceDataset(rb, ["state"], episodes=[7])


def test_direct_and_zarr_image_reads_agree(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = ReplayBuffer.open(path)
    frames = np.array([7, 5, 5, 13, 0, 17])
    expected = np.concatenate([ep["image_wrist"] for ep in eps])[frames]
    assert np.array_equal(rb.read_frames("image_wrist", frames, direct=True), expected)
    assert np.array_equal(rb.read_frames("image_wrist", frames, direct=False), expected)
    a = SequenceDataset(rb, ["image_front", "image_wrist"], n_obs_steps=3, horizon=4)
    b = SequenceDataset(
        rb, ["image_front", "image_wrist"], n_obs_steps=3, horizon=4, direct_image_reads=False
    )
    for i in range(len(a)):
        assert np.array_equal(a[i]["image_front"], b[i]["image_front"])
        assert np.array_equal(a[i]["image_wrist"], b[i]["image_wrist"])
    with pytest.raises(IndexError, match="outside"):
        rb.read_frames("image_front", np.array([18]))


def test_normalized_samples_and_missing_stats(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = ReplayBuffer.open(path)
    norm = Normalizer(compute_stats(rb, keys=["state", "action"]))
    ds = SequenceDataset(rb, ["image_front", "state"], n_obs_steps=2, horizon=4, normalizer=norm)
    s = ds[6]  # episode 1, t = 1: frames [0, 1, 2, 3]
    np.testing.assert_allclose(
        s["action"], norm.normalize("action", eps[1]["action"][[0, 1, 2, 3]]), atol=1e-6
    )
    assert s["action"].min() >= -1 - 1e-6 and s["action"].max() <= 1 + 1e-6
    assert s["image_front"].dtype == np.uint8  # images are not normalized here
    with pytest.raises(
        MissingStatsError, match=r"no statistics/mode for 'qvel'.*covers \['action', 'state'\]"
    ):
        SequenceDataset(rb, ["qvel"], normalizer=norm)


def test_dataloader_with_two_workers(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path)
    ds = SequenceDataset(rb, ["image_front", "image_wrist", "state"], n_obs_steps=2, horizon=4)
    reference = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, num_workers=2)
    batches = list(loader)
    assert sum(len(b["t"]) for b in batches) == len(ds)
    assert batches[0]["image_front"].shape == (4, 2, 8, 8, 3) and batches[0]["action"].shape == (4, 4, 7)
    for k in ("image_front", "image_wrist", "state", "action", "episode", "t"):
        got = torch.cat([b[k] for b in batches]).numpy()
        assert np.array_equal(got, np.stack([np.asarray(r[k]) for r in reference])), k


def test_split_episodes_is_deterministic() -> None:
    train, val = split_episodes(10, 0.2, seed=3)
    assert (train, val) == split_episodes(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_episodes(10, 0.2, seed=4) != (train, val)
    assert len(split_episodes(3, 0.01, seed=0)[1]) == 1  # at least one validation episode
    assert split_episodes(5, 0.0) == ([0, 1, 2, 3, 4], [])

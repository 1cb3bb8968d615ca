"""VLAPolicy rebuilt from a checkpoint directory alone: same chunks, checks on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vla.data import MissingStatsError, Normalizer
from vla.encoders import EncoderConfig, build_encoder
from vla.policy import FingerprintMismatchError, PolicyMeta, VLAPolicy
from vla.training import latest_checkpoint, load_policy


def _obs(rng: np.random.Generator, to: int = 2) -> dict:
    return {
        "state": rng.uniform(-1, 1, (to, 7)).astype(np.float32),
        "qvel": np.zeros((to, 6), np.float32),
        "image_front": rng.integers(0, 255, (to, 32, 32, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 255, (to, 32, 32, 3), dtype=np.uint8),
        "instruction": "pick up the red cube",
        "step": 0,
        "prev_action": None,
    }


@pytest.mark.parametrize("policy", ["diffusion", "transformer"])
def test_round_trip_from_checkpoint_dir(debug_runs: dict[str, Path], policy: str) -> None:
    ckpt = latest_checkpoint(debug_runs[policy])
    vla = VLAPolicy.from_checkpoint(ckpt, seed=0)
    obs = _obs(np.random.default_rng(0))
    chunk = vla(obs)
    assert chunk.shape == (8, 7) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    # The same computation by hand from the checkpoint files.
    head, info = load_policy(ckpt)
    norm = Normalizer.from_state_dict(json.loads((ckpt / "processor.json").read_text())["normalizer"])
    meta = PolicyMeta.from_dict(info.shape_meta, "shape_meta")
    enc = build_encoder(EncoderConfig.from_dict(meta.encoder))
    img = enc.encode_images({c: obs[f"image_{c}"][-1:] for c in meta.cameras})
    txt = enc.encode_text([obs["instruction"]])
    batch = {
        "tokens": torch.cat([img.tokens, txt.tokens], 1),
        "token_mask": torch.cat([img.mask, txt.mask], 1),
        "state": torch.from_numpy(norm.normalize("state", obs["state"]))[None],
    }
    pred = head.predict_chunk(batch, generator=torch.Generator().manual_seed(0))[0]
    np.testing.assert_allclose(chunk, norm.unnormalize("action", pred.numpy()), rtol=1e-5, atol=1e-5)
    # Un-normalized: actions are in robot units inside the dataset's range (loosely), not [-1, 1] codes.
    stats = norm.stats["action"]
    assert chunk.shape[1] == stats["min"].shape[0]


def test_fingerprint_mismatch_raises(debug_runs: dict[str, Path], tiny_encoder_dir: Path) -> None:
    ckpt = latest_checkpoint(debug_runs["transformer"])
    other = build_encoder(
        EncoderConfig(family="siglip", model=str(tiny_encoder_dir), n_tokens=4, max_text_len=16)
    )
    with pytest.raises(FingerprintMismatchError, match=r"fingerprint|encoder"):
        VLAPolicy.from_checkpoint(ckpt, encoder=other)


def test_fingerprint_mismatch_from_different_weights(
    debug_runs: dict[str, Path], tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    from safetensors.torch import load_file, save_file

    moved = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, moved)
    weights = next(moved.glob("*.safetensors"))
    sd = load_file(weights)
    key = next(iter(sd))
    sd[key] = sd[key] + 0.01
    save_file(sd, weights, metadata={"format": "pt"})
    with pytest.raises(FingerprintMismatchError):
        VLAPolicy.from_checkpoint(debug_runs["transformer"], encoder_model=str(moved))


def _copy_ckpt(run: Path, tmp_path: Path) -> Path:
    src = latest_checkpoint(run)
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def test_missing_normalizer_stats_raise(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = _copy_ckpt(debug_runs["transformer"], tmp_path)
    saved = json.loads((ckpt / "processor.json").read_text())
    (ckpt / "processor.json").write_text(json.dumps({**saved, "normalizer": None}))
    with pytest.raises(MissingStatsError, match=r"processor\.json"):
        VLAPolicy.from_checkpoint(ckpt)
    state = json.loads(json.dumps(saved))
    del state["normalizer"]["stats"]["action"], state["normalizer"]["modes"]["action"]
    (ckpt / "processor.json").write_text(json.dumps(state))
    with pytest.raises(MissingStatsError, match="action"):
        VLAPolicy.from_checkpoint(ckpt)


def _legacy(ckpt: Path) -> None:
    """Rewrite a checkpoint as vla-train wrote it before processor.json (normalizer.json only)."""
    proc = json.loads((ckpt / "processor.json").read_text())
    (ckpt / "normalizer.json").write_text(json.dumps(proc["normalizer"]))
    (ckpt / "processor.json").unlink()


@pytest.mark.parametrize("policy", ["diffusion", "transformer"])
def test_checkpoint_from_before_the_processor_loads_and_predicts_the_same(
    debug_runs: dict[str, Path], tmp_path: Path, policy: str
) -> None:
    ckpt = _copy_ckpt(debug_runs[policy], tmp_path)
    obs = _obs(np.random.default_rng(1))
    new = VLAPolicy.from_checkpoint(ckpt, seed=0)
    _legacy(ckpt)
    old = VLAPolicy.from_checkpoint(ckpt, seed=0)
    assert old.processor.state_dict() == new.processor.state_dict()
    np.testing.assert_array_equal(old(obs), new(obs))
    (ckpt / "normalizer.json").write_text("null\n")
    with pytest.raises(MissingStatsError, match=r"normalizer\.json"):
        VLAPolicy.from_checkpoint(ckpt)


def test_shape_meta_missing_raises(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = _copy_ckpt(debug_runs["transformer"], tmp_path)
    meta = json.loads((ckpt / "shape_meta.json").read_text())
    del meta["cameras"]
    (ckpt / "shape_meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cameras"):
        VLAPolicy.from_checkpoint(ckpt)


def test_missing_camera_in_observation_raises(debug_runs: dict[str, Path]) -> None:
    vla = VLAPolicy.from_checkpoint(debug_runs["transformer"])
    obs = _obs(np.random.default_rng(0))
    del obs["image_wrist"]
    with pytest.raises(KeyError, match="image_wrist"):
        vla(obs)

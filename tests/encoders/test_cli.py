"""Entry points: vla-embed composes its config and fills a real store; pretraining saves a checkpoint
that loads back through build_encoder like any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from vla.data import DatasetMeta, ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import EmbeddingStore
from vla.paths import CONFIG_DIR


def test_vla_embed_fills_the_store(tmp_path, tiny_dirs) -> None:
    from vla.cli.embed import encoder_config, run

    path = tmp_path / "d.zarr"
    rb = ReplayBuffer.create(path, DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front", "wrist"]))
    rng = np.random.default_rng(0)
    for t, instr in ((4, "pick up the red cube"), (3, "open the drawer")):
        rb.add_episode(
            {
                "image_front": rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8),
                "image_wrist": rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8),
                "action": np.zeros((t, 7), np.float32),
            },
            instr,
        )
    overrides = [
        f"dataset={path}",
        f"encoder.model={tiny_dirs['siglip']}",
        "encoder.max_text_len=8",
        "batch_size=2",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="embed", overrides=overrides)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fp = run(cfg)
        # configs/embed.yaml threads=1: torch's one-per-core default ran 8x slower on a shared CPU
        assert torch.get_num_threads() == cfg.threads == 1
    finally:
        torch.set_num_threads(before)
    enc = build_encoder(encoder_config(cfg))
    assert fp == enc.fingerprint
    store = EmbeddingStore(ReplayBuffer.open(path), fp)
    assert store.image_tokens("front", np.arange(7)).shape == (7, enc.tokens_per_image, enc.dim)
    assert store.group["image_front"].chunks[0] == 2


def test_vla_embed_requires_a_dataset() -> None:
    from vla.cli.embed import run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="embed")
    with pytest.raises(ValueError, match="dataset="):
        run(cfg)


def test_pretrain_saves_a_loadable_checkpoint(tmp_path) -> None:
    from vla.cli.pretrain_encoder import to_pretrain_config
    from vla.pretrain.siglip import pretrain

    overrides = [
        f"out_dir={tmp_path / 'sim_siglip'}",
        "steps=2",
        "batch_size=8",
        "eval_batch=4",
        "train.n_scenes=8",
        "eval.n_scenes=4",
        "train.tasks=[pick_cube]",
        "eval.tasks=[pick_cube]",
        "model.vision_layers=1",
        "model.text_layers=1",
        "model.hidden_size=32",
        "model.intermediate_size=64",
        "model.heads=2",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="pretrain_encoder", overrides=overrides)
    pc, _ = to_pretrain_config(cfg)
    metrics = pretrain(pc, log=lambda s: None)
    assert metrics["steps_run"] == 2 and np.isfinite(metrics["final_loss"])
    assert 0.0 <= metrics["held_out"]["front_ordered_top1"] <= 1.0
    assert (tmp_path / "sim_siglip" / "metrics.json").is_file()
    # Loaded back like any checkpoint, through the sim_siglip encoder config with model= overridden.
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        enc_cfg = compose(config_name="encoder/sim_siglip")["encoder"]
    d = dict(enc_cfg)
    d["model"] = str(tmp_path / "sim_siglip")
    enc = build_encoder(EncoderConfig.from_dict(d))
    obs = {"front": np.zeros((2, 96, 96, 3), np.uint8), "wrist": np.zeros((2, 96, 96, 3), np.uint8)}
    out = enc.encode(obs, ["pick up the red cube", "lift the blue cube"])
    assert out.tokens.shape == (2, 2 * 64 + 16, 32)
    assert out.mask[:, out.segments["text"]].sum(1).tolist() == [5, 4]


def test_vla_embed_shards_and_merge(tmp_path, tiny_dirs) -> None:
    """vla-embed num_shards=2 shard=0|1, then merge=true: the dataset gets a complete group."""
    from vla.cli.embed import run
    from vla.encoders.cache import EmbeddingStore

    path = tmp_path / "d.zarr"
    rb = ReplayBuffer.create(path, DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front"]))
    rng = np.random.default_rng(0)
    for t in (4, 3):
        rb.add_episode(
            {"image_front": rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8)}, "open the drawer"
        )
    base = [
        f"dataset={path}",
        f"encoder.model={tiny_dirs['siglip']}",
        "encoder.max_text_len=8",
        "batch_size=2",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfgs = [
            compose(config_name="embed", overrides=[*base, "num_shards=2", x]) for x in ("shard=0", "shard=1")
        ]
        merge = compose(config_name="embed", overrides=[*base, "num_shards=2", "merge=true"])
    fps = {run(c) for c in cfgs}
    assert (tmp_path / "d.embed_shard_1_of_2.zarr").is_dir()
    assert run(merge) in fps and len(fps) == 1
    EmbeddingStore(ReplayBuffer.open(path), fps.pop()).verify()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr"]  # side stores removed

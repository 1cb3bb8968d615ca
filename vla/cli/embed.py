"""`vla-embed`: precompute frame embeddings of a whole dataset once, keyed by encoder fingerprint.

    vla-embed dataset=data/pick_cube.zarr                       # encoder=sim_siglip (default)
    vla-embed dataset=data/pick_cube.zarr encoder=siglip_base encoder.model=/models/siglip-base

Writes `embeddings/<fingerprint>/image_<cam>`, `text`, `text_mask` into the store; training reads them
with `vla.encoders.cache.EmbeddingStore(rb, encoder.fingerprint)`.

Sharded (`vla.encoders.cache_shards`): `num_shards=n shard=i` encodes shard i's block into a side
store `<dataset>.embed_shard_i_of_n.zarr`; `num_shards=n merge=true` joins them into the dataset.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, UsageError, entry
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import precompute_embeddings
from vla.progress import progress_bar

COMMAND = Command(
    prog="vla-embed",
    config="embed",
    summary="precompute the frozen encoder's tokens of every frame of a dataset, once, inside the store",
    examples=(
        "vla-embed dataset=outputs/demos/pick_cube.zarr",
        "vla-embed dataset=data/teleop.zarr encoder=siglip_base encoder.model=/models/siglip-base",
        "vla-embed dataset=data/big.zarr num_shards=4 shard=0      # one of 4 shards (any machine)",
        "vla-embed dataset=data/big.zarr num_shards=4 merge=true   # join them into the dataset",
    ),
)


def encoder_config(cfg: DictConfig) -> EncoderConfig:
    """The `encoder` group of a composed config as an EncoderConfig (unknown keys raise)."""
    try:
        choice = HydraConfig.get().runtime.choices.get("encoder", "?")
    except ValueError:  # composed without the entry point (tests)
        choice = "?"
    d = OmegaConf.to_container(cfg.encoder, resolve=True)
    assert isinstance(d, dict)
    return EncoderConfig.from_dict(d, source=f"configs/encoder/{choice}.yaml")


def run(cfg: DictConfig) -> str:
    from vla.data import ReplayBuffer

    if not cfg.dataset:
        raise UsageError(
            "missing required option dataset=<path of a zarr store> (configs/embed.yaml: dataset)"
        )
    shard, num_shards = int(cfg.get("shard") or 0), int(cfg.get("num_shards") or 1)
    if cfg.get("merge"):
        from vla.encoders.cache_shards import merge_embedding_shards

        t0 = time.perf_counter()
        rb = ReplayBuffer.open(cfg.dataset, mode="a")
        name = merge_embedding_shards(rb, cfg.dataset, num_shards)
        print(
            f"embeddings/{name}: merged {num_shards} shards into {cfg.dataset} ({time.perf_counter() - t0:.1f} s)"
        )
        return name
    if cfg.get("threads"):
        # Before the encoder is built: torch's default (one thread per core) collapses when another
        # process holds a core (OpenMP barriers spin), measured 8x slower on the shared 2-core CPU.
        torch.set_num_threads(int(cfg.threads))
    enc = build_encoder(encoder_config(cfg))
    rb = ReplayBuffer.open(cfg.dataset, mode="a")
    n_cams = len(rb.meta.camera_names)
    bar: Any = None
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        # Camera frames (observations x cameras), the unit of benchmarks/bench_encoder.py's frames/s.
        nonlocal bar
        if bar is None:  # created on the first batch: an up-to-date store prints no empty bar
            bar = progress_bar(total=total * n_cams, unit="frame", desc="vla-embed")
        bar.update(done * n_cams - bar.n)

    if num_shards > 1:
        from vla.encoders.cache_shards import embed_shard

        rb = ReplayBuffer.open(cfg.dataset)
        path = embed_shard(
            rb, enc, cfg.dataset, shard, num_shards, batch_size=int(cfg.batch_size), dtype=str(cfg.dtype)
        )
        print(f"shard {shard} of {num_shards}: {path} ({time.perf_counter() - t0:.1f} s)")
        return enc.fingerprint
    try:
        fp = precompute_embeddings(
            rb,
            enc,
            batch_size=int(cfg.batch_size),
            dtype=str(cfg.dtype),
            overwrite=bool(cfg.overwrite),
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    dt = time.perf_counter() - t0
    how = (
        f"{dt:.1f} s, {rb.n_frames * n_cams / dt:.0f} frames/s, {torch.get_num_threads()} torch threads"
        if bar is not None
        else "already up to date"
    )
    print(f"embeddings/{fp}: {rb.n_frames} frames x {n_cams} cameras in {cfg.dataset} ({how})")
    return fp


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    run(cfg)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()

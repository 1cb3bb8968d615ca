"""`vla-embed`: precompute frame embeddings of a whole dataset once, keyed by encoder fingerprint.

    vla-embed dataset=data/pick_cube.zarr                       # encoder=sim_siglip (default)
    vla-embed dataset=data/pick_cube.zarr encoder=siglip_base encoder.model=/models/siglip-base

Writes `embeddings/<fingerprint>/image_<cam>`, `text`, `text_mask` into the store; training reads them
with `vla.encoders.cache.EmbeddingStore(rb, encoder.fingerprint)`.
"""

from __future__ import annotations

import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import precompute_embeddings
from vla.paths import config_dir


def encoder_config(cfg: DictConfig) -> EncoderConfig:
    """The `encoder` group of a composed config as an EncoderConfig (unknown keys raise)."""
    try:
        choice = HydraConfig.get().runtime.choices.get("encoder", "?")
    except ValueError:  # composed outside @hydra.main (tests)
        choice = "?"
    d = OmegaConf.to_container(cfg.encoder, resolve=True)
    assert isinstance(d, dict)
    return EncoderConfig.from_dict(d, source=f"configs/encoder/{choice}.yaml")


def run(cfg: DictConfig) -> str:
    from vla.data import ReplayBuffer

    if not cfg.dataset:
        raise SystemExit(
            "vla-embed: set dataset=<path of a ReplayBuffer zarr store> (configs/embed.yaml: dataset)"
        )
    enc = build_encoder(encoder_config(cfg))
    rb = ReplayBuffer.open(cfg.dataset, mode="a")
    t0 = time.time()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.time() - t0, 1e-9)
        print(f"\r{done}/{total} frames  {rate:.1f} frames/s", end="", file=sys.stderr, flush=True)

    fp = precompute_embeddings(
        rb,
        enc,
        batch_size=int(cfg.batch_size),
        dtype=str(cfg.dtype),
        overwrite=bool(cfg.overwrite),
        progress=progress,
    )
    print(file=sys.stderr)
    print(f"embeddings/{fp}: {rb.n_frames} frames x {len(rb.meta.camera_names)} cameras in {cfg.dataset}")
    return fp


@hydra.main(config_path=config_dir(), config_name="embed", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

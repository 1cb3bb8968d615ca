"""`vla-pretrain-encoder`: train the embedded default encoder (small SigLIP) on simulator scenes.

vla-pretrain-encoder                                   # configs/pretrain_encoder.yaml
vla-pretrain-encoder out_dir=outputs/encoder/mine steps=200
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from vla.paths import config_dir
from vla.pretrain.siglip import PretrainConfig, SiglipModelSize, pretrain
from vla.pretrain.sim_pairs import PairConfig


def to_pretrain_config(cfg: DictConfig) -> tuple[PretrainConfig, int | None]:
    """Hydra config -> (PretrainConfig, torch threads); unknown keys raise naming the field."""
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    c.pop("hydra", None)
    threads = c.pop("threads", None)

    def pairs(d: dict, name: str) -> PairConfig:
        try:
            return PairConfig(**{**d, "tasks": tuple(d.get("tasks") or ()), "cameras": tuple(d["cameras"])})
        except TypeError as e:
            raise ValueError(f"configs/pretrain_encoder.yaml: {name}: {e}") from e

    try:
        pc = PretrainConfig(
            **{k: v for k, v in c.items() if k not in ("model", "train", "eval", "crop_scale")},
            crop_scale=tuple(c["crop_scale"]),
            model=SiglipModelSize(**c["model"]),
            train=pairs(c["train"], "train"),
            eval=pairs(c["eval"], "eval"),
        )
    except TypeError as e:
        raise ValueError(f"configs/pretrain_encoder.yaml: {e}") from e
    return pc, threads


@hydra.main(config_path=config_dir(), config_name="pretrain_encoder", version_base="1.3")
def main(cfg: DictConfig) -> None:
    pc, threads = to_pretrain_config(cfg)
    if threads:
        torch.set_num_threads(int(threads))
    m = pretrain(pc)
    print(f"saved {pc.out_dir}; held-out top-1 (batch {pc.eval_batch}): {m['held_out']}")


if __name__ == "__main__":
    main()

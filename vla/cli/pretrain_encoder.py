"""`vla-pretrain-encoder`: train the embedded default encoder (small SigLIP) on simulator scenes.

vla-pretrain-encoder                                   # configs/pretrain_encoder.yaml
vla-pretrain-encoder out_dir=outputs/encoder/mine steps=200
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry
from vla.pretrain.siglip import PretrainConfig, SiglipModelSize, pretrain
from vla.pretrain.sim_pairs import PairConfig

COMMAND = Command(
    prog="vla-pretrain-encoder",
    config="pretrain_encoder",
    summary="pretrain the embedded default encoder (a small SigLIP) on simulator scenes",
    examples=(
        "vla-pretrain-encoder",
        "vla-pretrain-encoder out_dir=outputs/encoder/mine steps=200",
    ),
)


def to_pretrain_config(cfg: DictConfig) -> tuple[PretrainConfig, int | None]:
    """Hydra config -> (PretrainConfig, torch threads); unknown keys raise naming the field."""
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    c.pop("hydra", None)
    threads = c.pop("threads", None)
    c.pop("text_tower", None)

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
    except (TypeError, ValueError) as e:
        raise ValueError(f"configs/pretrain_encoder.yaml: {e}") from e
    return pc, threads


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    from pathlib import Path

    pc, threads = to_pretrain_config(cfg)
    if threads:
        torch.set_num_threads(int(threads))
    Path(pc.out_dir).mkdir(parents=True, exist_ok=True)
    # The resolved config beside the checkpoint (where Hydra's run dir used to put it).
    (Path(pc.out_dir) / "pretrain_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.get("text_tower", "word") == "minilm":
        from vla.pretrain.lit import pretrain_lit

        m = pretrain_lit(pc)
    elif cfg.get("text_tower", "word") == "word":
        m = pretrain(pc)
    else:
        raise ValueError(f"text_tower={cfg.text_tower!r}: expected word or minilm")
    print(f"saved {pc.out_dir}; held-out top-1 (batch {pc.eval_batch}): {m['held_out']}")
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()

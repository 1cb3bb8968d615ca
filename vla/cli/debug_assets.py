"""The tiny demos and encoder that make `experiment=debug` runs self-contained (`vla-train`,
`vla-dagger`): a fresh clone trains and evaluates in seconds without `make demo`'s outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def ensure_debug_assets(
    b: dict[str, Any], dataset: Path, enc_dir: Path, log: Callable[[str], None] = print
) -> None:
    """Collect `b["n_demos"]` demos of `b["task"]` at `b["image_size"]` px into `dataset` and pretrain
    a tiny sim encoder for `b["encoder_steps"]` steps into `enc_dir`, each only when missing."""
    from vla.collect import CollectConfig, collect
    from vla.pretrain.siglip import PretrainConfig, SiglipModelSize, pretrain
    from vla.pretrain.sim_pairs import PairConfig

    task, size = str(b.get("task", "pick_cube")), int(b.get("image_size", 32))
    if not dataset.exists():
        log(f"bootstrap: collecting {b.get('n_demos', 3)} {task} demos -> {dataset}")
        collect(
            CollectConfig(
                task=task,
                n_episodes=int(b.get("n_demos", 3)),
                out=str(dataset),
                env_overrides={"image_size": size},
                progress=False,
            )
        )
    if not (enc_dir / "config.json").is_file():
        log(f"bootstrap: a tiny sim encoder ({b.get('encoder_steps', 2)} steps) -> {enc_dir}")
        pairs = dict(n_scenes=8, image_size=size)
        pretrain(
            PretrainConfig(
                out_dir=str(enc_dir),
                model=SiglipModelSize(
                    image_size=size,
                    patch_size=8,
                    hidden_size=32,
                    intermediate_size=64,
                    vision_layers=1,
                    text_layers=1,
                    heads=2,
                    max_text_len=16,
                ),
                train=PairConfig(seed=0, **pairs),
                eval=PairConfig(seed=1_000_000, **pairs),
                steps=int(b.get("encoder_steps", 2)),
                batch_size=8,
                eval_batch=8,
                warmup_steps=1,
            ),
            log=lambda m: None,
        )

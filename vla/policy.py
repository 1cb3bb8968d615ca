"""`VLAPolicy`: frozen encoder + processor + policy head = a ChunkPolicy (robot units in and out).

    policy = VLAPolicy.from_checkpoint("outputs/train/run")       # run dir or checkpoint dir
    chunk = policy(obs)        # obs from vla.runtime.ObservationBuffer.snapshot -> (H, 7) absolute actions

Used by the simulator evaluation, the runtime control loop and the ROS node. Everything it needs
comes from the checkpoint directory: weights (safetensors), the head config, `shape_meta.json`
(cameras, To/T/Ta, dims, the encoder config), `processor.json` (`vla.processor.Processor`: the
transform path training used; checkpoints from before it have `normalizer.json`) and the encoder fingerprint,
which must equal the fingerprint of the encoder rebuilt here (else the tokens differ from training).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies import Policy
from vla.data import Normalizer
from vla.encoders import EncoderConfig, FrozenEncoder, build_encoder, same_encoder
from vla.processor import Processor

SHAPE_META_FORMAT = "vla-pipeline/1"


class FingerprintMismatchError(ValueError):
    """The encoder rebuilt for inference is not the one the checkpoint was trained with."""


@dataclass(frozen=True)
class PolicyMeta:
    """Shape metadata written to a checkpoint's `shape_meta.json` by `vla-train`.

    cameras: camera names whose image tokens the policy reads, in token order.
    use_text: text tokens of the instruction follow the image tokens.
    n_obs_steps / horizon / n_action_steps: To, T, Ta.
    state_key / action_key: observation and action keys (`state` (Ds,), `action` (Da,)).
    encoder: the `EncoderConfig` fields of the frozen encoder.
    task: task name and env overrides of the data (informational; the evaluator uses them as defaults).
    """

    cameras: tuple[str, ...]
    use_text: bool
    n_obs_steps: int
    horizon: int
    n_action_steps: int
    state_dim: int
    action_dim: int
    token_dim: int
    n_tokens: int
    encoder: dict[str, Any]
    state_key: str = "state"
    action_key: str = "action"
    task: dict[str, Any] = dataclasses.field(default_factory=dict)
    format: str = SHAPE_META_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str) -> PolicyMeta:
        if not d:
            raise ValueError(f"{source}: no shape metadata (was the checkpoint written by vla-train?)")
        if d.get("format") != SHAPE_META_FORMAT:
            raise ValueError(f"{source}: format {d.get('format')!r}, this code reads {SHAPE_META_FORMAT!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in d
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )  # type: ignore[misc]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}")
        return cls(**{**d, "cameras": tuple(d["cameras"])})


class VLAPolicy:
    """ChunkPolicy: `__call__(obs, prefix=None) -> (H, Da)` absolute actions in robot units.

    obs: {"state": (To, Ds) or (Ds,), "image_<cam>": (To, H, W, 3) or (H, W, 3) uint8, "instruction": str}
    (the runtime's `ObservationBuffer.snapshot`); only the latest frame of each camera is encoded.
    prefix: optional (P, Da) committed actions in robot units (real-time chunking).
    used_ema: whether the head holds EMA weights (None: not known); `from_checkpoint` records it
        (False also when EMA was asked for but the checkpoint has no ema.safetensors).
    checkpoint: where `from_checkpoint` loaded it from (None when built directly).
    """

    def __init__(
        self,
        head: Policy,
        encoder: FrozenEncoder,
        processor: Processor,
        meta: PolicyMeta,
        device: str | torch.device = "cpu",
        seed: int | None = 0,
        num_inference_steps: int | None = None,
        used_ema: bool | None = None,
    ) -> None:
        c = head.config
        for f in ("n_obs_steps", "horizon", "state_dim", "action_dim", "token_dim"):
            if getattr(c, f) != getattr(meta, f):
                raise ValueError(
                    f"VLAPolicy: head config {f}={getattr(c, f)} but shape meta says {getattr(meta, f)}"
                )
        for f in ("cameras", "use_text", "n_obs_steps", "horizon", "state_key", "action_key"):
            if getattr(processor, f) != getattr(meta, f):
                raise ValueError(
                    f"VLAPolicy: processor {f}={getattr(processor, f)!r} but shape meta says {getattr(meta, f)!r}"
                )
        self.head = head.to(device).eval()
        self.encoder = encoder
        self.processor = processor
        self.meta = meta
        self.device = torch.device(device)
        self.num_inference_steps = num_inference_steps
        self.used_ema = used_ema
        self.checkpoint: Path | None = None
        self.generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None

    @property
    def normalizer(self) -> Normalizer:
        return self.processor.normalizer

    # ------------------------------------------------------------------ properties used by loops
    @property
    def n_obs_steps(self) -> int:
        return self.meta.n_obs_steps

    @property
    def n_action_steps(self) -> int:
        return self.meta.n_action_steps

    @property
    def horizon(self) -> int:
        return self.meta.horizon

    def reset(self) -> None:
        self.head.reset()

    def seed_sampling(self, seed: int) -> None:
        """Restart the sampling noise (diffusion heads) from `seed`: `evaluate` seeds each episode
        with its own seed, so an episode's result does not depend on the episodes run before it
        (what makes a sharded evaluation equal the unsharded one)."""
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))

    # ------------------------------------------------------------------ inference
    def batch(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The head's input batch of one observation (through the processor, as in training)."""
        s = np.asarray(obs.get(self.meta.state_key, np.zeros(0)))
        if s.shape[-1:] != (self.meta.state_dim,) and self.meta.state_key in obs:
            raise ValueError(
                f"VLAPolicy: state has {s.shape[-1]} dims, the policy needs {self.meta.state_dim}"
            )
        return self.processor.observation_batch(obs, self.encoder, self.device)

    @torch.no_grad()
    def predict_normalized(self, obs: dict[str, Any], prefix: np.ndarray | None = None) -> torch.Tensor:
        """(1, H, Da) normalized chunk (for tests and benchmarks)."""
        kwargs: dict[str, Any] = {"generator": self.generator}
        if prefix is not None and len(prefix):
            kwargs["prefix"] = self.processor.prefix_input(prefix, self.device)
        if self.num_inference_steps is not None and self.head.name == "diffusion":
            kwargs["num_inference_steps"] = self.num_inference_steps
        return self.head.predict_chunk(self.batch(obs), **kwargs)

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None = None) -> np.ndarray:
        """(H, Da) absolute actions in robot units."""
        return self.processor.to_robot(self.predict_normalized(obs, prefix)[0])

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        encoder_model: str | None = None,
        encoder: FrozenEncoder | None = None,
        device: str = "cpu",
        use_ema: bool = True,
        seed: int | None = 0,
        num_inference_steps: int | None = None,
    ) -> VLAPolicy:
        """Rebuild from a run or checkpoint directory alone.

        encoder_model: load the encoder weights from here instead of the recorded path (e.g. on a
            robot); the fingerprint must still match. encoder: an already built encoder (same check).
        Raises:
            FingerprintMismatchError: the encoder's fingerprint differs from the checkpoint's.
            MissingStatsError: the checkpoint has no normalization statistics for state or action.
            vla.training.CheckpointError: a checkpoint file is missing, truncated or does not fit.
        With `use_ema` and no ema.safetensors the raw weights are used (a notice is logged) and
        `used_ema` says so.
        """
        from vla.training import load_policy

        head, info = load_policy(path, use_ema=use_ema, device=device)
        where = info.path
        meta = PolicyMeta.from_dict(info.shape_meta, source=str(where / "shape_meta.json"))
        if info.processor is not None:
            processor = Processor.from_state_dict(info.processor, source=str(where / "processor.json"))
        else:  # written before processor.json existed: the same settings from its other files
            processor = Processor.from_legacy(info.shape_meta or {}, info.normalizer, source=str(where))
        if not info.encoder_fingerprint:
            raise FingerprintMismatchError(f"{where / 'encoder.json'}: no encoder fingerprint recorded")
        if encoder is None:
            enc_dict = dict(meta.encoder)
            if encoder_model is not None:
                enc_dict["model"] = encoder_model
            encoder = build_encoder(
                EncoderConfig.from_dict(enc_dict, source=f"{where / 'shape_meta.json'}:encoder")
            )
        if not same_encoder(encoder.fingerprint, info.encoder_fingerprint):
            raise FingerprintMismatchError(
                f"{where / 'encoder.json'}: checkpoint was trained on tokens of encoder "
                f"{info.encoder_fingerprint!r} but the encoder loaded now is {encoder.fingerprint!r} "
                "(different weights, model or token settings); retrain or load the original encoder"
            )
        policy = cls(
            head,
            encoder,
            processor,
            meta,
            device=device,
            seed=seed,
            num_inference_steps=num_inference_steps,
            used_ema=info.used_ema,
        )
        policy.checkpoint = info.path
        return policy

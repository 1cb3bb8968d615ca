"""Does an instruction name something the camera sees? A score from the frozen LiT dual encoder.

The score is the cosine between the encoder's pooled image embedding of one camera frame (vision
tower pooled output, projected) and the instruction's sentence embedding (MiniLM token states
mean-pooled over the real tokens, projected): the two quantities LiT pretraining aligned
(`vla.pretrain.lit`). An instruction scoring under the threshold is reported as not grounded: the
ROS policy node puts the result on its status topic (`vla.deploy.controller.LoopController`).

Calibration (2026-12-06, `outputs/encoder/sim_lit`, 150 pick_cube scenes with 3 of the 6 palette
colours each, front camera at 96 px): "pick up the {colour} cube" scored p5 0.157 / median 0.247
for colours in the scene and median -0.027 / p95 0.082 for absent ones (AUC 0.99); paraphrases of
the scene's own instruction 0.19-0.25, "grab the banana" 0.08, "open the drawer" 0.05. The default
threshold 0.12 sits between; other encoders need their own (`threshold`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.12


@dataclass(frozen=True)
class Grounding:
    """The encoder's verdict on one instruction against one camera frame."""

    instruction: str
    camera: str
    score: float  # cosine in [-1, 1]
    threshold: float

    @property
    def grounded(self) -> bool:
        return self.score >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for the status topic and results.json."""
        return {**asdict(self), "grounded": self.grounded}


class InstructionGrounding:
    """Scores instructions against camera frames with a LiT `VisionTextDualEncoderModel`.

    Args:
        model: the dual encoder (`vision_model`, `visual_projection`, `text_model`, `text_projection`).
        tokenizer: its (MiniLM) tokenizer.
        preprocessing: the encoder's `ImagePreprocessing` (size, mean, std).
        threshold: scores below it are reported as not grounded.
        camera: the camera whose frame is scored.
        max_len: tokenizer truncation length.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        preprocessing: Any,
        threshold: float = DEFAULT_THRESHOLD,
        camera: str = "front",
        max_len: int = 32,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"grounding threshold must be a cosine in [-1, 1], got {threshold}")
        from vla.pretrain.lit import SentenceCache  # the sentence embedding LiT pretraining aligned

        self.model, self.tokenizer, self.pre = model, tokenizer, preprocessing
        self.threshold, self.camera, self.max_len = float(threshold), camera, max_len
        self._sentences = SentenceCache(model, tokenizer, max_len)

    @classmethod
    def from_encoder(
        cls, encoder: Any, threshold: float = DEFAULT_THRESHOLD, camera: str = "front"
    ) -> InstructionGrounding | None:
        """For a loaded `lit` family encoder (`vla.encoders.DualEncoder`); None for any other family,
        whose towers were not aligned to a sentence embedding (no calibrated score)."""
        cfg = getattr(encoder, "cfg", None)
        if cfg is None or getattr(cfg, "family", None) != "lit":
            return None
        return cls(encoder.model, encoder.tokenizer, encoder.pre, threshold, camera, cfg.max_text_len)

    def __call__(self, image: np.ndarray, instruction: str) -> Grounding:
        """image: (H, W, 3) uint8 frame of `camera`; instruction: free text."""
        import torch  # here, not at import: the expert-source deploy path stays torch-free

        from vla.encoders.preprocess import to_pixels

        frame = np.asarray(image)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"grounding: expected an (H, W, 3) frame, got shape {frame.shape}")
        from vla.pretrain.lit import image_embeddings  # the image side LiT pretraining aligned

        param = next(self.model.parameters())
        with torch.no_grad():
            pixels = to_pixels(frame[None], self.pre, param.device, param.dtype, f"image_{self.camera}")
            img = image_embeddings(self.model, pixels)[0]
            txt = self._sentences([instruction])[0]
            score = float(img.float() @ txt.float())
        return Grounding(instruction, self.camera, score, self.threshold)

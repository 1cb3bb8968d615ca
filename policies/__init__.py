"""Policy heads (torch and diffusers only). Never imports `vla`, `sim` or `ros_bridge`.

from policies import make_policy, DiffusionConfig
cfg = DiffusionConfig(token_dim=384, denoiser="unet")
policy = make_policy("diffusion", cfg)
loss, metrics = policy.compute_loss(cfg.fake_batch(8))
chunk = policy.predict_chunk(cfg.fake_obs(8))          # (8, horizon, action_dim)
"""

from policies.act.configuration import TransformerConfig
from policies.base import Policy
from policies.config import PolicyConfig
from policies.diffusion.configuration import DiffusionConfig
from policies.ema import EMA
from policies.registry import config_class, make_config, make_policy, policy_names

__all__ = [
    "EMA",
    "DiffusionConfig",
    "Policy",
    "PolicyConfig",
    "TransformerConfig",
    "config_class",
    "make_config",
    "make_policy",
    "policy_names",
]

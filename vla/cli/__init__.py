"""Console entry points (`vla-<verb>`). Only these modules compose Hydra configs."""

"""DAgger in simulation: roll out the policy (mixed with the expert), label every visited state with
the expert, aggregate into the dataset, fine-tune, evaluate; round after round (`vla-dagger`)."""

from vla.dagger.labeler import ExpertLabeler, LabelRecorder, MixedPolicy

__all__ = ["ExpertLabeler", "LabelRecorder", "MixedPolicy"]

"""Trainers built on one shared loop."""
from ponder.train.loop import TrainConfig, TrainLoop, lr_at

__all__ = ["TrainConfig", "TrainLoop", "lr_at"]

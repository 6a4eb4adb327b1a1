"""The machine-learning application: one set of nodes for training and inference."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]

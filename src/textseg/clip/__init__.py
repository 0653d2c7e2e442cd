"""CLIP towers through transformers: loading, dense features, text encoding with template ensembles."""

from textseg.clip.loading import load_clip

__all__ = ["load_clip"]

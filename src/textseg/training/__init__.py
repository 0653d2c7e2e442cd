"""The one training loop (Accelerate) shared by every trainable method."""

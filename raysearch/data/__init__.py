"""Data layer: the dataset folder format, image/mask reading and validation, the built-in phantom,
patient-grouped splits and the geometry-preserving transforms (see docs/interfaces.md)."""

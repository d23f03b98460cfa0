"""raysearch: distributed hyperparameter search on Ray for multi-task hemidiaphragm localisation and
lung segmentation on chest X-rays (the method of Moris et al., DIGITAL HEALTH 10, 2024)."""

__version__ = "0.1.0"

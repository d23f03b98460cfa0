"""Names shared by the training loop, Ray Tune, W&B and the report: metrics and table columns.

One place, so that a metric logged during training, the column of a Parquet table and the row of a
paper table can never drift apart.
"""

from __future__ import annotations

SIDES = ("right", "left")
"""Patient's sides. Radiological convention: the patient's right appears on the image's left."""

# Threshold divisors of the paper: R, R/2, R/5, R/10.
THRESHOLD_DIVISORS = (1, 2, 5, 10)


def acc_key(split: str, divisor: float, side: str = "both") -> str:
    """Metric name of the landmark accuracy at R/divisor, e.g. ``val/acc_r5`` or ``test/acc_r10_left``."""
    d = int(divisor) if float(divisor).is_integer() else divisor
    suffix = "" if side == "both" else f"_{side}"
    return f"{split}/acc_r{d}{suffix}"


def acc_mm_key(split: str, divisor: float, side: str = "both") -> str:
    """Metric name of the landmark accuracy at R_mm/divisor, e.g. ``test/acc_mm_r5`` (images with spacing only)."""
    return acc_key(split, divisor, side).replace("/acc_r", "/acc_mm_r")


# Per-epoch metrics (reported to Tune and W&B, columns of history.parquet).
EPOCH = "epoch"
TRAIN_LOSS = "train/loss_joint"
TRAIN_LOSS_HEM = "train/loss_hem"
TRAIN_LOSS_SEGM = "train/loss_segm"
VAL_LOSS = "val/loss_joint"
VAL_LOSS_HEM = "val/loss_hem"
VAL_LOSS_SEGM = "val/loss_segm"
VAL_ERR = "val/err_ref_mean"
"""Mean Euclidean landmark error over both sides, in 512-px reference pixels."""
VAL_DICE = "val/dice"
LR = "lr"
IMAGES_PER_S = "train/images_per_s"

# Final test metrics (one value per run).
TEST_ERR = "test/err_ref_mean"
TEST_DICE = "test/dice"
BEST_EPOCH = "best_epoch"

SEGMENTATION_METRICS = ("dice", "jaccard", "auc", "accuracy", "precision", "recall")

# Columns of landmark_errors.parquet: one row per (run, test image, side).
LANDMARK_COLUMNS = (
    "trial_id",
    "split_seed",
    "image_id",
    "side",
    "error_ref_px",      # Euclidean error in the 512-px reference frame
    "error_stored_px",   # in pixels of the stored image
    "error_orig_px",     # in pixels of the original acquisition (stored / orig_scale)
    "error_mm",          # NaN when the pixel spacing is unknown
    "dx_stored_px",      # predicted - true, x right
    "dy_stored_px",      # predicted - true, y down (positive: prediction below the truth)
    "dy_ref_px",
    "pred_x", "pred_y",  # stored pixels
    "true_x", "true_y",  # stored pixels
)

# Columns of segmentation.parquet: one row per (run, test image).
SEGMENTATION_COLUMNS = ("trial_id", "split_seed", "image_id") + SEGMENTATION_METRICS

# Files a run (train CLI) or an experiment (tune) writes.
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.parquet"
LANDMARK_FILE = "landmark_errors.parquet"
SEGMENTATION_FILE = "segmentation.parquet"
TRIALS_FILE = "trials.parquet"
EXPERIMENT_FILE = "experiment.json"
SPLITS_FILE = "splits.json"
CHECKPOINT_FILE = "best.pt"
# The last Tune/Train checkpoint of a finished trial: a marker naming ``runs/<trial_id>/best.pt``
# (relative to the experiment folder) instead of the dropped resume state.
COMPLETE_MARKER = "complete.json"

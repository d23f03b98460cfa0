"""Inference on radiograph files: load a checkpoint, preprocess, predict in batches, map back.

Frames (see :mod:`raysearch.geometry`): the *original* frame is the file as read by
:func:`raysearch.data.imageio.read_image` (its ``(H, W)``); the *network* frame is the square
``S x S`` input (``S = data.input_size`` of the checkpoint's config). Points go back with
:func:`raysearch.geometry.resize_points` ``((S, S) -> (H, W))``, the exact inverse of the
pixel-centre map :func:`raysearch.data.transforms.resize_sample` uses on the way in, so a point
is exact for any (non-square, odd) original size.

Per image (:func:`predict_items`): read -> resize to ``S`` -> forward (optionally with flip
test-time augmentation, :meth:`Predictor.forward`) -> decode the two dome points with
:func:`raysearch.heatmaps.decode_landmarks` (the lung probability drives the left/right split) ->
points to original pixels -> lung labels at the original size (:func:`seg_to_labels`) ->
measurements (:mod:`raysearch.predict.measure`) -> mask and overlay PNG bytes. The local path
and the Ray path (:mod:`raysearch.predict.ray_inference`) both call :func:`predict_items`, so
their results are the same.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from raysearch import schema
from raysearch.data.imageio import IMAGE_SUFFIXES, read_image
from raysearch.data.remote import is_uri
from raysearch.data.transforms import resize_sample
from raysearch.geometry import resize_points
from raysearch.heatmaps import decode_landmarks, heatmap_confidence, split_column
from raysearch.predict import measure as M
from raysearch.training.checkpoint import LoadedCheckpoint, load_checkpoint

LUNG_THRESHOLD = 0.5
"""A pixel is lung when the segmentation head's probability is > this value."""


class PredictInputError(ValueError):
    """Bad command-line input (checkpoint, files, manifest): the CLI exits with code 2."""


# -- checkpoint ------------------------------------------------------------------------------------

def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """Find the ``best.pt`` to use; return ``(path, description)``.

    Accepts a ``.pt`` file, a run folder holding ``best.pt``, or an experiment folder (or its URI)
    (``experiment.json`` + ``trials.parquet`` + ``runs/<trial_id>/best.pt``): the trial with the
    best value of the experiment's ``metric`` in its ``mode`` (``min``/``max``) among the trials
    whose checkpoint exists. ``description`` says which file (and which trial, with its metric) was chosen.
    Raises :class:`PredictInputError`.
    """
    if is_uri(path):  # an experiment in cloud storage: its tables and runs/ copied into the cache
        from raysearch.storage import local_experiment_copy

        try:
            path = local_experiment_copy(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise PredictInputError(f"--checkpoint {path}: cannot read this experiment ({exc})") from exc
    p = Path(path)
    if p.is_file():
        return p, f"checkpoint {p}"
    if not p.exists():
        raise PredictInputError(f"--checkpoint {p}: does not exist; expected a best.pt, a run folder or an experiment folder")
    if (p / schema.CHECKPOINT_FILE).is_file():
        return p / schema.CHECKPOINT_FILE, f"checkpoint {p / schema.CHECKPOINT_FILE}"
    markers = [p / schema.COMPLETE_MARKER] if (p / schema.COMPLETE_MARKER).is_file() else \
        sorted(p.glob(f"checkpoint_*/{schema.COMPLETE_MARKER}"))
    if markers:  # a finished trial's Tune folder or last checkpoint: follow the marker to runs/<trial>/best.pt
        return _follow_complete_marker(markers[-1])
    trials_path, exp_path = p / schema.TRIALS_FILE, p / "experiment.json"
    if not (trials_path.is_file() and exp_path.is_file()):
        raise PredictInputError(
            f"--checkpoint {p}: folder has neither {schema.CHECKPOINT_FILE} nor experiment.json + {schema.TRIALS_FILE}; "
            "expected a best.pt, a run folder or an experiment folder")
    exp = json.loads(exp_path.read_text())
    metric, mode = exp.get("metric"), exp.get("mode")
    if mode not in ("min", "max"):
        raise PredictInputError(f"{exp_path}: mode must be 'min' or 'max', got {mode!r}")
    trials = pd.read_parquet(trials_path)
    if metric not in trials.columns:
        raise PredictInputError(f"{trials_path}: has no column for the experiment's metric {metric!r}")
    candidates = []
    for _, row in trials.iterrows():
        value = pd.to_numeric(row[metric], errors="coerce")
        rel = row.get("checkpoint")
        if rel is None or (isinstance(rel, float) and math.isnan(rel)) or str(rel) == "" or not np.isfinite(value):
            continue
        ckpt = p / str(rel)
        if ckpt.is_dir():
            ckpt = ckpt / schema.CHECKPOINT_FILE
        if not ckpt.is_file():
            ckpt = p / "runs" / str(row["trial_id"]) / schema.CHECKPOINT_FILE
        if ckpt.is_file():
            candidates.append((float(value), str(row["trial_id"]), ckpt))
    if not candidates:
        raise PredictInputError(f"--checkpoint {p}: no trial in {trials_path.name} has a finite {metric} and an existing checkpoint")
    best = (min if mode == "min" else max)(candidates, key=lambda c: c[0])
    return best[2], (f"experiment {p.name}: trial {best[1]} chosen ({metric} = {best[0]:.6g}, best by mode {mode} "
                     f"of {len(candidates)} trial(s) with a checkpoint); checkpoint {best[2]}")


def _follow_complete_marker(marker: Path) -> tuple[Path, str]:
    """Return the ``best.pt`` a finished trial's completion marker names (searched upwards for its experiment)."""
    try:
        rel = json.loads(marker.read_text())["best_checkpoint"]
    except (ValueError, KeyError) as exc:
        raise PredictInputError(f"{marker}: not a readable completion marker ({exc})") from exc
    for parent in marker.parents:
        if (parent / rel).is_file():
            return parent / rel, f"checkpoint {parent / rel} (finished trial, via {marker})"
    raise PredictInputError(f"{marker}: names {rel}, which is not found in any folder above it; "
                            "pass the experiment folder or the best.pt itself")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``auto`` (CUDA when visible), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PredictInputError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


# -- network output -> original pixels ---------------------------------------------------------------

def network_to_original(points_net: np.ndarray, size: int, original_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(..., 2)`` xy points from the ``size x size`` network input to original-image pixels.

    Exactly :func:`raysearch.geometry.resize_points` ``((size, size) -> (H, W))``:
    ``x -> (x + 0.5) * W / size - 0.5``, ``y -> (y + 0.5) * H / size - 0.5``. float64, NaN stays NaN.
    """
    return resize_points(points_net, (int(size), int(size)), (int(original_hw[0]), int(original_hw[1])))


def seg_to_labels(seg_prob: np.ndarray, original_hw: tuple[int, int], split_net: float) -> np.ndarray:
    """Turn the lung probability ``(S, S)`` (network px) into uint8 labels ``(H, W)`` (original px).

    The probability is resized bilinearly to ``(H, W)`` (same pixel-centre convention as the
    points) and thresholded at :data:`LUNG_THRESHOLD`; lung pixels left of the split column
    (``split_net`` mapped to original x) get label 1 (patient's right lung), right of it label 2.
    Each side keeps only its largest 8-connected region (drops specks), so the apex used for the
    lung height is the top of the lung itself.
    """
    h, w = int(original_hw[0]), int(original_hw[1])
    s = seg_prob.shape[1]
    prob = cv2.resize(np.asarray(seg_prob, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    lung = prob > LUNG_THRESHOLD
    split = (float(split_net) + 0.5) * w / s - 0.5
    cols = np.arange(w)[None, :]
    labels = np.zeros((h, w), np.uint8)
    for value, part in ((1, cols < split), (2, cols > split)):
        side = (lung & part).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(side, connectivity=8)
        if n > 1:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            labels[comp == largest] = value
    return labels


# -- the predictor -------------------------------------------------------------------------------

class Predictor:
    """A loaded model that turns network-size images into heatmaps and lung probabilities.

    Args:
        checkpoint: a ``best.pt`` path, or a :class:`LoadedCheckpoint`.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        tta: flip test-time augmentation (see :meth:`forward`).

    Attributes: ``size`` (network input side, px), ``channels`` (``single``/``per_landmark``),
    ``has_heatmap``, ``has_seg``, ``config`` (the checkpoint's RunConfig), ``path``.
    """

    def __init__(self, checkpoint: str | Path | LoadedCheckpoint, device: str = "auto", tta: bool = False) -> None:
        self.device = resolve_device(device)
        loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
        self.model = loaded.model.to(self.device).eval()
        self.config = loaded.config
        self.path = loaded.path
        self.size = int(self.config.data.input_size)
        self.channels = self.config.model.heatmap_channels
        self.has_heatmap = self.model.heatmap_head is not None
        self.has_seg = self.model.seg_head is not None
        self.tta = bool(tta)

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """Resize original pixels (float32 ``(H, W)`` in [0, 1]) to the network input: float32 ``(S, S)``.

        Uses :func:`raysearch.data.transforms.resize_sample`, the same resize as training.
        """
        sample = {"image": pixels, "mask": None, "landmarks": np.full((2, 2), np.nan)}
        return resize_sample(sample, self.size)["image"]

    @torch.inference_mode()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Run the model on a batch of network-size images.

        Args:
            images: float32 ``(B, S, S)`` in [0, 1].

        Returns:
            ``(heatmaps, seg_prob)``: float32 ``(B, C, S, S)`` in [0, 1] or None (no heatmap head),
            float32 ``(B, S, S)`` lung probability (sigmoid of the logits) or None (no seg head).
            With ``tta``: the mirrored image is predicted too; its outputs are mirrored back
            (and, for ``per_landmark``, its channels swapped: the mirrored right dome is the
            left one) and averaged with the plain outputs, before any decoding.
        """
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None].to(self.device)
        b = x.shape[0]
        if self.tta:
            x = torch.cat([x, torch.flip(x, dims=[-1])], dim=0)
        out = self.model(x)
        hm = out.get("heatmap")
        seg = torch.sigmoid(out["seg_logits"])[:, 0] if out.get("seg_logits") is not None else None
        if self.tta:
            if hm is not None:
                back = torch.flip(hm[b:], dims=[-1])
                if back.shape[1] == 2:
                    back = back[:, [1, 0]]
                hm = 0.5 * (hm[:b] + back)
            if seg is not None:
                seg = 0.5 * (seg[:b] + torch.flip(seg[b:], dims=[-1]))
        return (None if hm is None else hm.float().cpu().numpy(),
                None if seg is None else seg.float().cpu().numpy())

    def decode(self, heatmap: np.ndarray | None, seg_prob: np.ndarray | None,
               original_hw: tuple[int, int]) -> "Decoded":
        """Decode one image's outputs (network px) into points and labels in original px."""
        split = split_column(seg_prob, self.size) if seg_prob is not None else (self.size - 1) / 2.0
        if heatmap is not None:
            pts_net = decode_landmarks(heatmap, self.channels, seg_prob)
            conf = heatmap_confidence(heatmap, pts_net)
        else:
            pts_net = np.full((2, 2), np.nan)
            conf = np.full(2, np.nan)
        labels = seg_to_labels(seg_prob, original_hw, split) if seg_prob is not None else None
        return Decoded(points_net=pts_net, points=network_to_original(pts_net, self.size, original_hw),
                       confidence=conf, labels=labels, split_net=float(split))


@dataclass
class Decoded:
    """One image decoded: ``points_net`` / ``points`` (2,2) xy network / original px, rows [right, left];
    ``confidence`` (2,) in [0, 1]; ``labels`` uint8 (H, W) original px or None; ``split_net`` network px."""

    points_net: np.ndarray
    points: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray | None
    split_net: float


# -- inputs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputItem:
    """One file to predict.

    ``spacing_mm``: mm per pixel from the manifest (wins over everything), or None;
    ``default_spacing_mm``: ``--spacing``, used when neither the manifest nor the file gives one.
    ``patient_id`` / ``date`` (ISO ``YYYY-MM-DD``): from the manifest; "" = take DICOM tags if any.
    """

    index: int
    id: str
    file: str
    spacing_mm: float | None = None
    default_spacing_mm: float | None = None
    patient_id: str = ""
    date: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> "InputItem":
        return InputItem(**json.loads(text))


@dataclass(frozen=True)
class PredictOptions:
    """What to compute and write per image (plain values: travels to Ray actors as a dict)."""

    normal_range_mm: tuple[float, float] = M.DEFAULT_NORMAL_RANGE_MM
    normal_range_norm: tuple[float, float] = M.DEFAULT_NORMAL_RANGE_NORM
    masks: bool = True
    overlays: bool = True


@dataclass
class ImageResult:
    """The outcome for one input: ``row`` (CSV columns, see :data:`raysearch.predict.outputs.PREDICTION_COLUMNS`)
    or ``error`` (why the file failed); ``mask_png`` / ``overlay_png``: encoded PNG bytes (b"" = none)."""

    index: int
    id: str
    file: str
    row: dict = field(default_factory=dict)
    error: str = ""
    mask_png: bytes = b""
    overlay_png: bytes = b""

    @property
    def ok(self) -> bool:
        return not self.error


def collect_files(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into image files: a folder is searched recursively for
    :data:`raysearch.data.imageio.IMAGE_SUFFIXES` (sorted, hidden entries skipped); a named file is
    kept whatever its suffix (DICOM is recognised by content). Raises :class:`PredictInputError` for
    a path that does not exist or a folder with no image."""
    files: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise PredictInputError(f"--input {p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise PredictInputError(f"--input {p}: no such file or folder")
    return files


def unique_ids(files: list[Path]) -> list[str]:
    """Return one id per file: its name without suffix, made unique with ``_2``, ``_3``... in order."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        stem = f.name[: -len(f.suffix)] if f.suffix else f.name
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        out.append(stem if n == 1 else f"{stem}_{n}")
    return out


def normalise_date(value: str, where: str) -> str:
    """Return ``YYYY-MM-DD`` for a DICOM date (``YYYYMMDD``) or an ISO date; "" stays "".

    Raises :class:`PredictInputError` naming ``where`` for anything else.
    """
    v = str(value).strip()
    if not v or v.lower() == "nan":
        return ""
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return _dt.datetime.strptime(v, fmt).date().isoformat()
        except ValueError:
            continue
    raise PredictInputError(f"{where}: date {value!r} is not a date; expected YYYY-MM-DD or YYYYMMDD")


def build_items(files: list[Path], manifest: str | Path | None = None,
                default_spacing_mm: float | None = None) -> list[InputItem]:
    """Build the work list: one :class:`InputItem` per file, with manifest data attached.

    Manifest (CSV, header row): ``file`` and/or ``id`` to match rows to inputs (``file`` relative
    to the manifest's folder, absolute, or a bare file name; ``id`` = the image id, or the id to
    give the file), optional ``patient_id``, ``date`` (YYYY-MM-DD or YYYYMMDD), ``pixel_spacing_mm``.
    A row that matches no input, or a malformed value, raises :class:`PredictInputError` naming the row.
    """
    ids = unique_ids(files)
    items = [InputItem(i, ids[i], str(f), None, default_spacing_mm) for i, f in enumerate(files)]
    if manifest is None:
        return items
    mpath = Path(manifest)
    try:
        table = pd.read_csv(mpath, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise PredictInputError(f"--manifest {mpath}: cannot be read as CSV ({type(exc).__name__}: {exc})") from None
    table.columns = [c.strip() for c in table.columns]
    if not {"file", "id"} & set(table.columns):
        raise PredictInputError(f"--manifest {mpath}: needs a 'file' or an 'id' column, got columns {list(table.columns)}")
    by_path = {Path(f).resolve(): i for i, f in enumerate(files)}
    by_name: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_name.setdefault(f.name, []).append(i)
    by_id = {item.id: i for i, item in enumerate(items)}
    for n, row in enumerate(table.to_dict("records"), start=2):
        where = f"{mpath.name} row {n}"
        idx = None
        fname = str(row.get("file", "")).strip()
        if fname:
            cand = Path(fname) if Path(fname).is_absolute() else mpath.parent / fname
            idx = by_path.get(cand.resolve())
            if idx is None and len(by_name.get(Path(fname).name, [])) == 1:
                idx = by_name[Path(fname).name][0]
        rid = str(row.get("id", "")).strip()
        if idx is None and rid and not fname:
            idx = by_id.get(rid)
        if idx is None:
            raise PredictInputError(f"{where}: matches no input file (file={fname!r}, id={rid!r})")
        spacing = None
        sp_text = str(row.get("pixel_spacing_mm", "")).strip()
        if sp_text:
            try:
                spacing = float(sp_text)
            except ValueError:
                spacing = math.nan
            if not (math.isfinite(spacing) and spacing > 0):
                raise PredictInputError(f"{where}: pixel_spacing_mm must be a positive number of mm, got {sp_text!r}")
        old = items[idx]
        items[idx] = InputItem(idx, rid if (rid and fname) else old.id, old.file, spacing, default_spacing_mm,
                               str(row.get("patient_id", "")).strip(), normalise_date(row.get("date", ""), where))
    if len({it.id for it in items}) != len(items):
        raise PredictInputError(f"--manifest {mpath}: the ids it assigns are not unique")
    return items


def _dicom_tags(path: Path, raw_is_dicom: bool) -> tuple[str, str]:
    """Return ``(PatientID, date)`` of a DICOM file ("" when absent); date from StudyDate,
    else AcquisitionDate, else SeriesDate, as YYYY-MM-DD."""
    if not raw_is_dicom:
        return "", ""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:
        return "", ""
    pid = str(getattr(ds, "PatientID", "") or "").strip()
    date = ""
    for key in ("StudyDate", "AcquisitionDate", "SeriesDate"):
        v = str(getattr(ds, key, "") or "").strip()
        if v:
            try:
                date = normalise_date(v, f"{path} {key}")
            except PredictInputError:
                date = ""
            break
    return pid, date


# -- the per-image pipeline --------------------------------------------------------------------------

def predict_items(predictor: Predictor, items: list[InputItem], options: PredictOptions,
                  batch_size: int = 8, progress=None) -> list[ImageResult]:
    """Predict every item; a file that cannot be read becomes an error result, the rest go on.

    Images are read, resized and forwarded ``batch_size`` at a time. ``progress``: an optional
    callable ``progress(n_done_in_this_call)`` (e.g. a tqdm's ``update``). Returns one
    :class:`ImageResult` per item, in the items' order.
    """
    from raysearch.predict.outputs import encode_png, render_overlay

    results: list[ImageResult] = []
    for start in range(0, len(items), max(1, int(batch_size))):
        chunk = items[start : start + max(1, int(batch_size))]
        loaded, nets = [], []
        for item in chunk:
            try:
                img = read_image(item.file)
            except Exception as exc:  # ImageError names the file; anything else is reported too
                results.append(ImageResult(item.index, item.id, item.file, error=_reason(exc)))
                continue
            loaded.append((item, img))
            nets.append(predictor.preprocess(img.pixels))
        if loaded:
            heatmaps, segs = predictor.forward(np.stack(nets))
            for j, (item, img) in enumerate(loaded):
                hw = img.pixels.shape
                dec = predictor.decode(None if heatmaps is None else heatmaps[j], None if segs is None else segs[j], hw)
                spacing, source = _spacing(item, img)
                pid, date = item.patient_id, item.date
                if not (pid and date):
                    tag_pid, tag_date = _dicom_tags(Path(item.file), img.meta.get("format") == "dicom")
                    pid, date = pid or tag_pid, date or tag_date
                meas = M.measure(dec.points, dec.labels, spacing, options.normal_range_mm, options.normal_range_norm)
                row = _row(item, hw, dec, spacing, source, meas, pid, date)
                res = ImageResult(item.index, item.id, item.file, row=row)
                if options.masks and dec.labels is not None:
                    res.mask_png = encode_png(dec.labels)
                if options.overlays:
                    res.overlay_png = encode_png(render_overlay(img.pixels, dec.labels, dec.points, meas, spacing),
                                                 rgb=True)
                results.append(res)
        if progress is not None:
            progress(len(chunk))
    results.sort(key=lambda r: r.index)
    return results


def _reason(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if text else type(exc).__name__


def _spacing(item: InputItem, img) -> tuple[float | None, str]:
    if item.spacing_mm is not None:
        return float(item.spacing_mm), "manifest"
    if img.pixel_spacing_mm is not None:
        return float(img.pixel_spacing_mm), f"dicom:{img.meta.get('spacing_source') or 'PixelSpacing'}"
    if item.default_spacing_mm is not None:
        return float(item.default_spacing_mm), "cli"
    return None, ""


def _row(item: InputItem, hw: tuple[int, int], dec: Decoded, spacing: float | None, source: str,
         meas: dict, patient_id: str, date: str) -> dict:
    (rx, ry), (lx, ly) = dec.points
    row = {"id": item.id, "file": item.file, "width": int(hw[1]), "height": int(hw[0]),
           "right_x": float(rx), "right_y": float(ry), "left_x": float(lx), "left_y": float(ly)}
    for name, v in (("right_x", rx), ("right_y", ry), ("left_x", lx), ("left_y", ly)):
        row[f"{name}_mm"] = M.to_mm(v, spacing)
    row["right_confidence"], row["left_confidence"] = (float(c) for c in dec.confidence)
    row["pixel_spacing_mm"] = math.nan if spacing is None else float(spacing)
    row["spacing_source"] = source
    row.update(meas)
    row["patient_id"], row["date"] = patient_id, date
    return row


def predict_local(predictor: Predictor, items: list[InputItem], options: PredictOptions,
                  batch_size: int = 8, show_progress: bool = True) -> list[ImageResult]:
    """:func:`predict_items` in this process with a tqdm progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=len(items), desc="predict", unit="img", file=sys.stderr, disable=not show_progress) as bar:
        return predict_items(predictor, items, options, batch_size, progress=bar.update)


__all__ = [
    "Decoded",
    "ImageResult",
    "InputItem",
    "LUNG_THRESHOLD",
    "PredictInputError",
    "PredictOptions",
    "Predictor",
    "build_items",
    "collect_files",
    "network_to_original",
    "normalise_date",
    "predict_items",
    "predict_local",
    "resolve_checkpoint",
    "resolve_device",
    "seg_to_labels",
    "unique_ids",
]

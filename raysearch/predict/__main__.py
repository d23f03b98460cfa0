"""``python -m raysearch.predict``: dome points, lung masks and the hemidiaphragm height difference.

Exit codes: 0 every image was predicted; 1 at least one input could not be read (listed in
errors.csv, the others are still written); 2 bad arguments (checkpoint, inputs, manifest, options).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raysearch.predict.measure import DEFAULT_NORMAL_RANGE_MM, DEFAULT_NORMAL_RANGE_NORM


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m raysearch.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="best.pt, a run folder, or an experiment folder (best trial)")
    p.add_argument("--input", required=True, nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--spacing", type=float, help="mm per pixel for images whose file/manifest gives none")
    p.add_argument("--manifest", help="CSV with file or id, and optional patient_id, date, pixel_spacing_mm")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--ray", action="store_true", help="run on Ray Data with a pool of model actors")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--normal-range", type=float, nargs=2, metavar=("LOW_MM", "HIGH_MM"),
                   default=DEFAULT_NORMAL_RANGE_MM, help="normal height difference, mm (default 0 30)")
    p.add_argument("--normal-range-norm", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   default=DEFAULT_NORMAL_RANGE_NORM, help="normal range as a fraction of lung height, "
                   "used without spacing (default 0 0.15)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for the local path (0: default)")
    p.add_argument("--no-overlays", action="store_true", help="skip overlays/<id>.png")
    p.add_argument("--ray-actors", type=int, default=0, help="actor pool size (0: automatic)")
    p.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per actor on CPU (e.g. 0.5)")
    p.add_argument("--ray-timeout", type=float, default=600.0, help="seconds without progress before failing")
    p.add_argument("--force", action="store_true", help="overwrite an earlier prediction in --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from raysearch.predict import PredictInputError, run_prediction
    from raysearch.training.checkpoint import CheckpointError

    if (Path(args.out) / "predictions.csv").exists() and not args.force:
        print(f"error: {args.out} already holds predictions.csv; choose another --out or pass --force", file=sys.stderr)
        return 2
    try:
        counts = run_prediction(args.checkpoint, args.input, args.out, spacing_mm=args.spacing,
                                manifest=args.manifest, tta=args.tta, use_ray=args.ray, batch_size=args.batch_size,
                                device=args.device, normal_range_mm=tuple(args.normal_range),
                                normal_range_norm=tuple(args.normal_range_norm), overlays=not args.no_overlays,
                                ray_actors=args.ray_actors, ray_cpus=args.ray_cpus, ray_timeout_s=args.ray_timeout,
                                threads=args.threads)
    except (PredictInputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{counts['n_ok']} of {counts['n_images']} image(s) predicted, {counts['n_flagged']} flagged, "
          f"{counts['n_errors']} error(s); results in {args.out}")
    return 1 if counts["n_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line for dataset folders: ``python -m raysearch.data synth|check|import-masks``.

* ``synth --out DIR [--n N] [--size PX] [--seed S] [--force]``: write the built-in phantom dataset
  (``--force`` replaces a non-empty DIR, deleting its contents).
* ``check DIR``: validate a dataset folder, print a summary and every problem; exit 0 if usable, 1 if not.
* ``import-masks --images DIR --masks DIR --out DIR [--spacing MM] [--force]``: build a dataset
  folder from images and lung masks, deriving one hemidiaphragm point per lung
  (rule: :mod:`raysearch.data.domes`).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from raysearch.config import DataConfig
from raysearch.data.errors import DatasetError, ImageError


def _refuse_non_empty(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(
            f"{out}: exists and is not empty; choose another --out, empty it, or pass --force to overwrite"
        )


def _synth(args: argparse.Namespace) -> int:
    from raysearch.data.phantom import write_phantom_dataset

    _refuse_non_empty(args.out, args.force)
    path = write_phantom_dataset(args.out, args.n, args.size, args.seed, overwrite=args.force)
    print(f"wrote {args.n} phantom images ({args.size}x{args.size} px, seed {args.seed}) to {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from raysearch.data.dataset import check_dataset

    report = check_dataset(args.dir)
    print(report.format())
    return 0 if report.ok else 1


def _import_masks(args: argparse.Namespace) -> int:
    from raysearch.data.domes import RULES_FILE, import_masks

    dataset = import_masks(args.images, args.masks, args.out, spacing_mm=args.spacing, force=args.force)
    rules = Counter(r["rule"] for r in _read_rules(dataset.root / RULES_FILE))
    print(f"wrote {len(dataset)} images to {dataset.root}; dome rules: {dict(rules)}")
    return 0


def _read_rules(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m raysearch.data``."""
    defaults = DataConfig()
    parser = argparse.ArgumentParser(prog="python -m raysearch.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the built-in phantom dataset folder")
    p.add_argument("--out", type=Path, required=True, help="folder to create (must be empty or absent)")
    p.add_argument("--n", type=_positive_int, default=defaults.phantom_n, help="number of images")
    p.add_argument("--size", type=_positive_int, default=defaults.phantom_size, help="image side in pixels")
    p.add_argument("--seed", type=int, default=defaults.phantom_seed)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out (its contents are deleted)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("check", help="validate a dataset folder and print a summary")
    p.add_argument("dir", type=Path, help="dataset folder holding manifest.csv")
    p.set_defaults(func=_check)

    p = sub.add_parser("import-masks", help="build a dataset folder from images + lung masks (no landmarks)")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--masks", type=Path, required=True, help="folder of lung masks, matched to images by file stem")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create (must be empty or absent)")
    p.add_argument("--spacing", type=_positive_float, default=None, help="pixel spacing in mm for every image")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.set_defaults(func=_import_masks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 1 unusable data or refused, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, ImageError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

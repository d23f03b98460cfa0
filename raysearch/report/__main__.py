"""``python -m raysearch.report EXP_DIR [EXP_DIR ...] --out REPORT_DIR``: tables and figures of experiments."""

from __future__ import annotations

import argparse
import os
import sys

from raysearch.report import ANALYSES, WANDB_MODES, ReportError, ReportOptions, build_report


def default_wandb_mode() -> str:
    """W&B users (``WANDB_API_KEY`` set) get the tables in their project; everyone else no W&B run at all."""
    return "online" if os.environ.get("WANDB_API_KEY") else "disabled"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the report, print where it is; return the exit status."""
    ap = argparse.ArgumentParser(prog="python -m raysearch.report", description=__doc__)
    ap.add_argument("experiments", nargs="+", help="experiment folders (written by python -m raysearch.tune)")
    ap.add_argument("--out", required=True, help="report folder (new, empty, or a previous report)")
    ap.add_argument("--holm", action="store_true", help="Holm-correct the Wilcoxon p-values over the matrix")
    ap.add_argument("--analysis", default="auto", choices=("auto",) + ANALYSES)
    ap.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM figure")
    ap.add_argument("--no-qualitative", action="store_true", help="skip the qualitative panel (Figure 8)")
    ap.add_argument("--wandb", default=None, choices=WANDB_MODES,
                    help="also log the tables to W&B (default: online when WANDB_API_KEY is set, else disabled)")
    ap.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a report")
    args = ap.parse_args(argv)
    try:
        opts = ReportOptions(holm=args.holm, analysis=args.analysis, gradcam=not args.no_gradcam,
                             qualitative=not args.no_qualitative, wandb=args.wandb or default_wandb_mode(),
                             force=args.force)
        out = build_report(args.experiments, args.out, opts)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {out / 'report.md'} and {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

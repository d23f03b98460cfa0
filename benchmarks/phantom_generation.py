"""Speed of the built-in phantom generator, as a ratio to reading the same images back from PNG files.

Usage: ``python benchmarks/phantom_generation.py [--n 60] [--sizes 256 512]``

For each size: generate ``--n`` phantoms (image, mask and exact dome truth, in one process), write them
as a dataset folder, then time reading every image + mask back with ``raysearch.data.imageio`` (the
loader a real dataset goes through). The ratio says how many PNG reads one generated phantom costs; a
generator much slower than reading would make the default dataset a bottleneck of the first run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from raysearch.data.dataset import load_dataset, load_sample
from raysearch.data.phantom import generate_phantom, write_phantom_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    print(f"{'size':>6} {'generate img/s':>15} {'read PNG img/s':>15} {'generate / read time':>21}")
    for size in args.sizes:
        generate_phantom(0, size)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.n):
            generate_phantom(0, size, index=i)
        gen = args.n / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_phantom_dataset(Path(tmp) / "ph", n=args.n, size=size, seed=0)
            records = load_dataset(folder).records
            t0 = time.perf_counter()
            for r in records:
                load_sample(r)
            read = len(records) / (time.perf_counter() - t0)
        print(f"{size:>6} {gen:>15.1f} {read:>15.1f} {read / gen:>21.2f}")


if __name__ == "__main__":
    main()

"""`make demo`: the main job on an embedded default, offline.

Today the default input is the shared fixture renders (`../shared/fixtures/render`, CC0 and MIT CG
faces) and the realism reference is the shared SFHQ faces (`../shared/fixtures/aligned_gan`,
StyleGAN2 samples: a stand-in, not real photos). It builds the dataset, benches the built-in methods
and prints where the report and the DuckDB file are. Real numbers need `--real` pointed at real
photos (FFHQ or your own): see the README.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-out")
    parser.add_argument("--fixtures", type=Path, default=Path(os.environ.get("DRFHQ_FIXTURES", REPO.parent / "shared" / "fixtures")))
    args = parser.parse_args(argv)
    from .bench.config import BenchConfig
    from .bench.run import run_bench
    from .console import console, progress_bar
    from .dataset.build import build_dataset
    from .dataset.config import BuildConfig
    from .errors import DrfhqError
    from .report.bench_report import overall_table
    from .report.summary import print_build_summary

    renders, reference = args.fixtures / "render", args.fixtures / "aligned_gan"
    if not renders.is_dir() or not reference.is_dir():
        console.print(f"[red]error:[/] the demo's inputs are missing: {renders} and {reference} (the shared fixtures)")
        return 2
    try:
        console.rule("1/2  drfhq build-dataset")
        with progress_bar("aligning faces") as update:
            built = build_dataset(BuildConfig(src=str(renders), out=str(args.out / "dataset"), size=256, workers=2),
                                  progress=update)
        print_build_summary(built, console)
        console.rule("2/2  drfhq bench")
        with progress_bar("features") as update:
            run = run_bench(BenchConfig(dataset=str(built.out), real=str(reference), out=str(args.out / "bench"),
                                        baselines=("input", "color-transfer")), progress=update, log=console.print)
    except DrfhqError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    console.print(overall_table(run))
    console.print("[yellow]The realism reference here is SFHQ's StyleGAN2 faces, a stand-in: for real numbers pass "
                  "--real with real photos (FFHQ or your own).[/]")
    console.print(f"report : {run.out / 'report.html'}")
    console.print(f"tables : {run.out / 'results.duckdb'}")
    console.print(f"try    : .venv/bin/drfhq query {run.out} \"SELECT method, grp, n, round(value, 3) AS identity "
                  "FROM results WHERE metric = 'identity_cosine' AND slice = 'gender' ORDER BY method, grp\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())

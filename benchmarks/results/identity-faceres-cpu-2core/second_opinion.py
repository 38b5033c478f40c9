"""Identity kept, judged by two networks trained apart: dlib's descriptor (bench's identity so far, and the one
`--w-identity` would optimise) and HSE FaceRes (VGGFace2-trained MobileNet). The same outputs as
exposure-lift-stuck-cpu-2core's table: each method's final composite and its default column (stuck dark renders
lifted), benched against the real photos with `--identity faceres,dlib`, sliced by source folder; the paired
differences, transfer against project-real, under each network. From the repository root:

    .venv/bin/python benchmarks/results/identity-faceres-cpu-2core/second_opinion.py DATASET REAL OUT \
        transfer-final=DIR project-real-final=DIR transfer-stuck=DIR project-real-stuck=DIR

Any other columns, with `--pairs A:B,C:D` (each A - B paired; the first pair also gives the networks' agreement),
serve other comparisons (w-identity-makehuman6-cpu-2core). Writes OUT/second_opinion.md and OUT/bench/.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from bench_spaces import identity_by_network  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("dataset", type=Path)
parser.add_argument("real", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("columns", nargs="+", help="NAME=FOLDER of outputs")
parser.add_argument("--pairs", default="transfer-stuck:project-real-stuck,transfer-final:project-real-final,"
                                         "transfer-stuck:transfer-final,project-real-stuck:project-real-final")
args = parser.parse_args()
columns = dict(a.split("=", 1) for a in args.columns)
rows, _ = dataset_rows(args.dataset, None)
run = run_bench(BenchConfig(dataset=str(args.dataset), real=str(args.real), out=str(args.out / "bench"), identity="faceres,dlib",
                            slices=("source_dir",), baselines=("input", *[f"{k}={v}" for k, v in columns.items()]),
                            bootstrap=1000), log=lambda *a: None)
pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
lines = identity_by_network(run, rows, ("input", *columns), [p for p in pairs if set(p) <= set(columns)],
                            {"faceres": "identity_cosine", "dlib": "identity_cosine_dlib"})
text = "\n".join(lines) + "\n"
(args.out / "second_opinion.md").write_text(text)
print(text)

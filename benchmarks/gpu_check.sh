#!/usr/bin/env bash
# The GPU check: training speed against NVIDIA's stylegan2-ada-pytorch at 256 and 1024 px config-f,
# and a short MobileStyleGAN transfer (train, translate held-back renders, bench), with one JSON of
# figures and one grid under $OUT. Prepared here, run on a lent GPU machine (Python 3.12, torch 2.11
# with CUDA, no network, at most 64 MiB carried per call, files kept only while the machine is warm).
#
#   bash benchmarks/gpu_check.sh pack [DATASET] [REAL]  here: wheels, weights, the peer, the data
#                                                       -> .gpu-carry/part-1 .. part-N (under 60 MiB each)
#   bash benchmarks/gpu_check.sh receive .gpu-carry/part-K   there, one call per part, carrying that part
#   bash benchmarks/gpu_check.sh run                    there, after the last part: the check (under 8 min)
#   bash benchmarks/gpu_check.sh run --tiny             here: the same steps at CPU sizes (the rehearsal)
#
# A device call: carry [".gpu-carry/part-K"], command "bash benchmarks/gpu_check.sh receive .gpu-carry/part-K"
# (and "&& bash benchmarks/gpu_check.sh run" on the last part). Then commit $OUT's files under
# benchmarks/results/ with the device's name.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CARRY=${DRFHQ_CARRY:-/tmp/drfhq-carry}          # where parts accumulate on the device machine
PART_MIB=56

python_here() { if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi; }

# A dataset split into a training part and the last HELD rows, held back for translation.
split_dataset() {   # SRC TRAIN_OUT HELD_OUT HELD
  "$(python_here)" - "$@" <<'EOF'
import shutil, sys
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
src, train, held, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
table = pq.read_table(src / "manifest.parquet")
ok = sorted(r["id"] for r in table.filter(pc.equal(table["status"], "ok")).select(["id"]).to_pylist())
held_ids = set(ok[-n:])
for folder, keep in ((train, lambda i: i not in held_ids), (held, lambda i: i in held_ids)):
    rows = table.filter(pc.is_in(table["id"], pa.array([i for i in ok if keep(i)])))
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows.select(["image_path"]).to_pylist():
        (folder / r["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / r["image_path"], folder / r["image_path"])
    pq.write_table(rows, folder / "manifest.parquet")
    print(f"{folder}: {rows.num_rows} rows")
EOF
}

pack() {
  local dataset=${1:-demo-out/dataset} real=${2:-../shared/fixtures/real}
  local py stage home
  py=$(python_here)
  [ -f "$dataset/manifest.parquet" ] || { echo "pack: $dataset is not a dataset (make demo, or drfhq render + build-dataset)" >&2; exit 2; }
  [ -d "$real" ] || { echo "pack: no real photos at $real" >&2; exit 2; }
  rm -rf .gpu-carry && mkdir -p .gpu-carry/stage/wheels .gpu-carry/stage/home .gpu-carry/stage/data
  stage=$REPO/.gpu-carry/stage
  # wheels the GPU image lacks (its list: the device tool's KINDS.md); cp312, no dependencies
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$stage/wheels" "duckdb==$(grep -oP '^duckdb==\K.*' requirements.lock)" \
    "lpips==$(grep -oP '^lpips==\K.*' requirements.lock)"
  # weights, in the weights-home layout (sha256 checked again there)
  home=$("$py" -c 'from drfhq_tools.models.weights import home; print(home())')
  for name in mobilestylegan-mapping-xml mobilestylegan-mapping-bin mobilestylegan-synthesis-xml \
              mobilestylegan-synthesis-bin inception-fid lpips-alex-backbone; do
    cp -r "$home/$name" "$stage/home/"
  done
  mkdir -p "$stage/home/dlib-face-descriptor"
  cp "$("$py" -c 'from drfhq_tools.models.weights import resolve; print(resolve("dlib-face-descriptor").path)')" "$stage/home/dlib-face-descriptor/"
  cp -r ../shared/peers/stylegan2-ada-pytorch "$stage/peer"      # the peer, for the benchmark only
  split_dataset "$dataset" "$stage/data/train" "$stage/data/held" 32
  cp -r "$real" "$stage/data/real"
  tar -C .gpu-carry -cf .gpu-carry/stage.tar stage && rm -rf .gpu-carry/stage
  (cd .gpu-carry && split -b ${PART_MIB}m -d -a 2 stage.tar chunk- && rm stage.tar)
  local k=0
  for chunk in .gpu-carry/chunk-*; do
    k=$((k + 1)); mkdir -p ".gpu-carry/part-$k"; mv "$chunk" ".gpu-carry/part-$k/"
  done
  du -sh .gpu-carry/part-*
  echo "carry each part in its own call: receive .gpu-carry/part-1 .. part-$k, then run"
}

receive() {
  local part=${1:?receive: name a .gpu-carry/part-K folder}
  mkdir -p "$CARRY"
  cp "$part"/chunk-* "$CARRY/"
  echo "received $(ls "$CARRY" | grep -c '^chunk-') chunks in $CARRY ($(du -sh "$CARRY" | cut -f1))"
}

run() {
  local tiny=0
  [ "${1:-}" = "--tiny" ] && tiny=1
  OUT=${OUT:-$REPO/gpu-check-out}
  mkdir -p "$OUT"
  local work py device train held real resolutions bt_batch bt_steps tr_res tr_batch kimg steps limit workers
  work=$(mktemp -d)
  exec > >(tee "$OUT/gpu_check.log") 2>&1
  if [ $tiny = 1 ]; then
    py=$(python_here); device=cpu
    local src=${DATASET:-$(ls -d /tmp/pytest-of-*/pytest-*/fixture_dataset0 2>/dev/null | tail -1)}
    [ -f "$src/manifest.parquet" ] || { echo "run --tiny: set DATASET to a built dataset" >&2; exit 2; }
    split_dataset "$src" "$work/train" "$work/held" 4
    train=$work/train; held=$work/held; real=${REAL:-../shared/fixtures/real}
    resolutions=64; bt_batch=2; bt_steps=1; tr_res=64; tr_batch=2; kimg=0.004; steps=2; limit=4; workers=2; bt_faces=1; nv_steps=3
  else
    py=python3; device=cuda
    if [ ! -d "$CARRY/stage" ]; then
      cat "$CARRY"/chunk-* | tar -C "$CARRY" -xf -
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/stage/wheels/*.whl
    export PYTHONPATH=/tmp/site:$REPO DRFHQ_HOME=$CARRY/stage/home DRFHQ_PEER=$CARRY/stage/peer
    train=$CARRY/stage/data/train; held=$CARRY/stage/data/held; real=$CARRY/stage/data/real
    resolutions=256,1024; bt_batch=8; bt_steps=3; tr_res=1024; tr_batch=16; kimg=0.4; steps=200; limit=16; workers=4; bt_faces=4; nv_steps=300
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi
  export PYTHONUNBUFFERED=1
  local drfhq="$py -m drfhq_tools.cli" t0 t1 t2 t3 t4
  t0=$(date +%s)
  $py benchmarks/bench_train.py --dataset "$train" --resolutions $resolutions --batch $bt_batch --steps $bt_steps \
    --device $device --json "$OUT/bench_train.json"
  t1=$(date +%s)
  $drfhq train "$train" --base mobilestylegan-ffhq --out "$work/train-run" --resolution $tr_res --batch $tr_batch \
    --mbstd-group 4 --kimg $kimg --snapshot-kimg $kimg --freeze-below 8 --grid 4 --device $device --workers $workers
  t2=$(date +%s)
  $drfhq translate "$held" --ckpt "$work/train-run" --out "$work/translated" --method transfer,project-real,layer-swap \
    --steps $steps --limit $limit --lpips-net alex --batch $limit --device $device
  t3=$(date +%s)
  $drfhq bench --dataset "$held" --real "$real" --out "$work/bench" --limit $limit --device $device --identity dlib-torch \
    --kid-subsets 10 --bootstrap 200 --cache "$work/cache.sqlite" \
    --baselines "input,color-transfer,transfer=$work/translated/transfer,project-real=$work/translated/project-real,layer-swap=$work/translated/layer-swap"
  t4=$(date +%s)
  # the latent-space table of the README and our inversion against NVIDIA's projector, on this run
  $py benchmarks/bench_spaces.py --dataset "$held" --ckpt "$work/train-run" --real "$real" --out "$work/spaces" \
    --steps $steps --limit $limit --batch $limit --device $device
  cp "$work/spaces/spaces.md" "$work/spaces/spaces.json" "$work/spaces/spaces.jpg" "$OUT/"
  $py benchmarks/bench_translate.py --generator "$work/train-run/g_real" --targets "$held/images" --faces $bt_faces \
    --steps $nv_steps --device $device --json "$OUT/bench_translate.json"
  cp "$(ls "$work"/train-run/snapshots/grid-*.png | tail -1)" "$OUT/transfer-grid.png"
  cp "$work/train-run/losses.png" "$OUT/losses.png" 2>/dev/null || true
  $py - "$OUT" "$work" "$t0" "$t1" "$t2" "$t3" "$t4" "$tiny" "$limit" "$steps" <<'EOF'
import json, sys, torch
from pathlib import Path
from drfhq_tools.bench.store import query
out, work = Path(sys.argv[1]), Path(sys.argv[2])
t0, t1, t2, t3, t4 = map(int, sys.argv[3:8])
tiny, faces, steps = sys.argv[8] == "1", int(sys.argv[9]), int(sys.argv[10])
train_cfg = json.loads((work / "train-run" / "train-config.json").read_text())
columns, rows = query(work / "bench", "SELECT method, metric, n, value, ci_low, ci_high, flag FROM results WHERE slice = 'all' ORDER BY method, metric")
report = {
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not tiny else "CPU (rehearsal, tiny sizes)",
    "torch": torch.__version__, "tiny": tiny,
    "bench_train": json.loads((out / "bench_train.json").read_text()),
    "transfer": {"train_s": t2 - t1, "kimg": train_cfg["kimg"], "batch": train_cfg["batch"], "resolution": train_cfg["resolution"],
                 "discriminator": train_cfg["discriminator"], "precision": train_cfg["precision"],
                 "translate_s_per_face": (t3 - t2) / faces, "translate_faces": faces, "inversion_steps": steps,
                 "bench_s": t4 - t3, "bench": [dict(zip(columns, r)) for r in rows]},
    "wall_s": t4 - t0,
}
(out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
print(f"gpu_check: {report['device']}, {report['wall_s']} s; figures in {out / 'gpu_check.json'}")
EOF
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  receive) shift; receive "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack [DATASET] [REAL] | receive PART | run [--tiny]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The GPU check (issue #14): training speed against NVIDIA's stylegan2-ada-pytorch at 256 and 1024 px
# config-f, and the paper's transfer run with MobileStyleGAN as G_real (fine-tune G_render on the
# renders, translate held-back renders with three methods, bench them), on a lent GPU machine
# (Python 3.12, torch with CUDA, no network, at most 64 MiB carried per call, files kept only while the
# machine stays warm, which is 30 s after a call).
#
# The work runs as one background driver on that machine, started by the first call; it takes each
# bundle of files as soon as the call carrying it has unpacked it, so the transfers overlap the GPU work
# and the device time is about the driver's own run:
#
#   bash benchmarks/gpu_check.sh pack [DATASET] [REAL]         here: .gpu-carry/part-1 .. part-N (< 61 MiB each)
#   bash benchmarks/gpu_check.sh start .gpu-carry/part-1        there, first call: unpack, start the driver
#   bash benchmarks/gpu_check.sh receive .gpu-carry/part-K      there, one call per further part, back to back
#   bash benchmarks/gpu_check.sh deadline SECONDS               there: the driver ends its work within SECONDS from now
#   bash benchmarks/gpu_check.sh wait [SECONDS]                 there, until the driver ends; its files -> $OUT
#
# A call runs 600 s at most, so a full run needs two wait calls, back to back: the machine goes back 30 s
# after a call, and whatever was not sent back by then is lost (the second lease lost its transfer run
# so, with translate running, when the session paused between the two). Each wait sends back what is
# there every 15 s; the training pictures and curves are there as soon as training ends.
#   bash benchmarks/gpu_check.sh bench-here FILES DATASET       here: bench the outputs it sent back (translated.tar.NN)
# What comes back ($OUT holds at most 8 files of 16 MiB): results.tar (log, JSON, memory trace, pictures,
# run.tar.gz) and translated.tar.00, .01, ... (the outputs, cut into 15 MiB pieces); with the spaces stage,
# spaces.tar.NN (its outputs) and g_render.tar.NN (the trained G_render).
#   GPU_CHECK_TINY=1 ... the same four steps here at CPU sizes  (the rehearsal; `run --tiny` does all four)
#
# Issue #13's run (the space table on the fixture renders, at more steps, with a G_render trained there):
#   GPU_CHECK_HELD=all GPU_CHECK_JPEG=0 GPU_CHECK_BUNDLES="bench-train transfer spaces" \
#     GPU_CHECK_STAGES="train spaces bench_translate export" GPU_CHECK_TRAIN_RES=256 ... pack DATASET
#   (the same start, receive, wait calls), then here: bash benchmarks/gpu_check.sh bench-spaces-here FILES DATASET
#   HELD=all: G_render trains on every usable render and the same renders are translated (as the CPU table did).
#   With a G_render from an earlier run instead of training (bundle g-render; no train stage), e.g. the
#   default space's transfer column again after a change to the inversion:
#   GPU_CHECK_G_RENDER=FILES-spaces/g_render GPU_CHECK_BUNDLES="transfer spaces g-render" GPU_CHECK_STAGES="spaces export" \
#     GPU_CHECK_SPACES_OTHER= GPU_CHECK_PROJECT_REAL_SPACES= GPU_CHECK_HELD=all GPU_CHECK_JPEG=0 ... pack DATASET
#   GPU_CHECK_SPACES_OTHER="w+reg@0.03,w+" sweeps w+reg's weight after the default column (bench_spaces.py: w+reg@WEIGHT);
#   bench-spaces-here then pairs each column's identity with project-real's, overall and per source folder.
#
# Bundles, in the order the driver needs them (each a tar.xz cut into parts):
#   bench-train  the peer, dlib's face descriptor, the training renders     -> bench_train.py
#   transfer     MobileStyleGAN, LPIPS AlexNet, the held-back renders, the real photos, lpips, dlib -> train, translate
#   features     Inception                                                    -> bench_features.py (images/s on CUDA)
#   bench        Inception, dlib and its detectors and landmarks, duckdb      -> bench (train and translate need no dlib)
#   spaces       LPIPS VGG (translate's default loss)                         -> spaces, bench_translate
# Renders travel as JPEG q95 4:4:4 (a seventh of their PNG size) and are written back as PNG on arrival;
# gpu_check.json says so.
set -euo pipefail
cd "${GPU_CHECK_REPO:-$(dirname "$0")/..}"
REPO=$PWD
CARRY=${DRFHQ_CARRY:-/tmp/drfhq-carry}       # where bundles are unpacked and the driver works, there
PART_MIB=${PART_MIB:-60}
TINY=${GPU_CHECK_TINY:-0}
# Sized from the first H100 runs (benchmarks/results/gpu-check-h100-2026-11-26/): a 15-minute lease
# holds a machine start (~30 s), bench_train (~240 s: six fresh processes, cudnn autotuning, nvcc),
# train (~120 s of start-up and snapshots at 1024 px around its --max-minutes) and translate
# (~150 s: 32 faces, two inversions of 200 steps). bench on that machine is CPU-bound (1.3 outputs/s,
# GPU idle), so by default the outputs come back as JPEG and bench runs here.
BUDGET_S=${GPU_CHECK_BUDGET_S:-800}          # the driver's whole run, from its start (device time is scarce)
BUNDLES=${GPU_CHECK_BUNDLES:-bench-train transfer features}      # what pack carries (+ bench: Inception, dlib models, duckdb)
STAGES=${GPU_CHECK_STAGES:-bench_train train translate features export}   # what the driver runs (+ bench, given its bundle)
AFTER_TRAIN_S=${GPU_CHECK_AFTER_TRAIN_S:-215}  # seconds kept for what follows training (translate 150, features 45)
FEATURES_S=45                                  # bench_features: two networks, each alone and end to end
HELD=${GPU_CHECK_HELD:-32}                     # renders held back for translation; all: translate the training renders
JPEG=${GPU_CHECK_JPEG:-1}                      # renders travel as JPEG q95 (1) or as they are (0: small datasets)
SPACE_STEPS=${GPU_CHECK_SPACE_STEPS:-50}       # spaces: inversion steps, every space alike
TRAIN_OVERHEAD_S=${GPU_CHECK_TRAIN_OVERHEAD_S:-90}    # train's start-up and last snapshot, beside --max-minutes (its timeout: +40 s)

python_here() { if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi; }
PY=$(python_here)

# A dataset split into a training part and the last HELD rows, held back for translation.
split_dataset() {   # SRC TRAIN_OUT HELD_OUT HELD
  "$PY" - "$@" <<'EOF'
import shutil, sys
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
src, train, held = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
table = pq.read_table(src / "manifest.parquet")
ok = sorted(r["id"] for r in table.filter(pc.equal(table["status"], "ok")).select(["id"]).to_pylist())
held_ids = set(ok) if sys.argv[4] == "all" else set(ok[-int(sys.argv[4]):])
for folder, keep in ((train, lambda i: sys.argv[4] == "all" or i not in held_ids), (held, lambda i: i in held_ids)):
    rows = table.filter(pc.is_in(table["id"], pa.array([i for i in ok if keep(i)])))
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows.select(["image_path"]).to_pylist():
        (folder / r["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / r["image_path"], folder / r["image_path"])
    pq.write_table(rows, folder / "manifest.parquet")
    print(f"{folder}: {rows.num_rows} rows")
EOF
}

# PNG <-> JPEG q95 4:4:4 for the renders' trip (in parallel; the file's name keeps its stem)
recode_images() {   # FOLDER png2jpg|jpg2png
  "$PY" - "$@" <<'EOF'
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from PIL import Image
folder, way = Path(sys.argv[1]), sys.argv[2]
def recode(path):
    image = Image.open(path).convert("RGB")
    if way == "png2jpg":
        image.save(path.with_suffix(".jpg"), quality=95, subsampling=0)
    else:
        image.save(path.with_suffix(".png"), compress_level=1)
    path.unlink()
files = sorted(folder.rglob("*.png" if way == "png2jpg" else "*.jpg"))
with ProcessPoolExecutor() as pool:
    list(pool.map(recode, files, chunksize=8))
print(f"{folder}: {len(files)} images {way}")
EOF
}

pack() {
  local dataset=${1:-demo-out/dataset} real=${2:-../shared/fixtures/real}
  local stage home name
  [ -f "$dataset/manifest.parquet" ] || { echo "pack: $dataset is not a dataset (drfhq render + build-dataset --size 1024)" >&2; exit 2; }
  [ -d "$real" ] || { echo "pack: no real photos at $real" >&2; exit 2; }
  rm -rf .gpu-carry && mkdir -p .gpu-carry
  stage=$REPO/.gpu-carry/stage
  home=$("$PY" -c 'from drfhq_tools.models.weights import home; print(home())')
  weights() {   # BUNDLE NAME...: files from the weights home or the packages that ship them, home layout
    local bundle=$1; shift
    for name in "$@"; do
      mkdir -p "$stage/$bundle/home/$name"
      cp "$("$PY" -c "from drfhq_tools.models.weights import resolve; print(resolve('$name').path)")" "$stage/$bundle/home/$name/"
    done
  }
  wheels() {    # BUNDLE REQUIREMENT...: cp312 wheels the GPU image lacks (its list: the device tool's KINDS.md)
    local bundle=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$stage/$bundle/wheels" "$@" 2>&1 | grep -v '^WARNING: Location' || true
  }
  pin() { grep -oP "^$1==\K.*" requirements.lock; }
  mkdir -p "$stage"/{bench-train,transfer,features,bench,spaces,g-render}/data
  cp -r ../shared/peers/stylegan2-ada-pytorch "$stage/bench-train/peer"    # the peer, for the benchmark only
  weights bench-train dlib-face-descriptor
  split_dataset "$dataset" "$stage/bench-train/data/train" "$stage/transfer/data/held" "$HELD"
  if [ "$JPEG" = 1 ]; then
    recode_images "$stage/bench-train/data/train" png2jpg
    recode_images "$stage/transfer/data/held" png2jpg
  fi
  weights transfer mobilestylegan-mapping-xml mobilestylegan-mapping-bin mobilestylegan-synthesis-xml mobilestylegan-synthesis-bin
  [[ " $STAGES " == *" translate "* ]] && weights transfer lpips-alex-backbone     # translate's --lpips-net alex (train needs no LPIPS)
  cp -r "$real" "$stage/transfer/data/real"
  # dlib and its CNN detector: translate's --face-check (on by default) looks for a face in each output
  wheels transfer "lpips==$(pin lpips)" "dlib-bin==$(pin dlib-bin)"
  weights transfer dlib-mmod-detector
  [[ " $BUNDLES " == *" features "* ]] && weights features inception-fid
  [[ " $BUNDLES " == *" spaces "* ]] && mkdir -p "$stage/spaces" && weights spaces lpips-vgg-backbone
  if [[ " $BUNDLES " == *" g-render "* ]]; then      # a G_render trained earlier (bench-spaces-here unpacks one): no train stage
    [ -f "${GPU_CHECK_G_RENDER:-}/generator.json" ] || { echo "pack: GPU_CHECK_G_RENDER must name a g_render folder" >&2; exit 2; }
    cp -r "$GPU_CHECK_G_RENDER" "$stage/g-render/g_render"
  fi
  if [[ " $BUNDLES " == *" bench "* ]]; then
    weights bench inception-fid dlib-mmod-detector dlib-landmarks-68 dlib-landmarks-5
    wheels bench "duckdb==$(pin duckdb)" "dlib-bin==$(pin dlib-bin)"
  fi
  "$PY" - "$REPO/.gpu-carry" "$PART_MIB" "$BUNDLES" <<'EOF'
# each bundle -> tar.xz, cut into pieces that fill parts of PART_MIB in the driver's order
import lzma, sys, tarfile
from pathlib import Path
root, part_bytes = Path(sys.argv[1]), int(sys.argv[2]) * 2**20
order = sys.argv[3].split()
blobs = {}
for name in order:
    path = root / f"{name}.tar.xz"
    with lzma.open(path, "wb", preset=6) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        tar.add(root / "stage" / name, arcname=name)
    blobs[name] = path
parts, room, counts = [[]], part_bytes, {}
for name in order:
    data, k = blobs[name].read_bytes(), 0
    while data:
        if room == 0:
            parts.append([]); room = part_bytes
        piece, data = data[:room], data[room:]
        parts[-1].append((f"{name}.{k:02d}", piece)); room -= len(piece); k += 1
    counts[name] = k
    blobs[name].unlink()
for i, pieces in enumerate(parts, 1):
    folder = root / f"part-{i}"
    folder.mkdir()
    for piece_name, piece in pieces:
        (folder / piece_name).write_bytes(piece)
    (folder / "bundles.txt").write_text("".join(f"{n} {c}\n" for n, c in counts.items()))
    print(f"part-{i}: {', '.join(n for n, _ in pieces)} ({sum(len(p) for _, p in pieces) / 2**20:.1f} MiB)")
EOF
  rm -rf "$stage"
  echo "calls: start .gpu-carry/part-1, receive .gpu-carry/part-2 .. part-$(ls -d .gpu-carry/part-* | wc -l), wait (each within 30 s of the last)"
}

# Copy a part's pieces; unpack every bundle whose pieces are all here (once).
receive() {
  local part=${1:?receive: name a .gpu-carry/part-K folder} name count have
  mkdir -p "$CARRY/pieces" "$CARRY/stage"
  cp "$part"/*.[0-9][0-9] "$CARRY/pieces/"
  cp "$part/bundles.txt" "$CARRY/"
  while read -r name count; do
    have=$(ls "$CARRY/pieces" | grep -c "^$name\.[0-9][0-9]$" || true)
    [ "$have" = "$count" ] && [ ! -f "$CARRY/$name.ready" ] || continue
    cat "$CARRY/pieces/$name".[0-9][0-9] | "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' \
      | tar -C "$CARRY/stage" -xf -
    rm -f "$CARRY/pieces/$name".[0-9][0-9]
    for data in "$CARRY/stage/$name"/data/*/; do
      [ -f "$data/manifest.parquet" ] && recode_images "$data" jpg2png
    done
    if [ -d "$CARRY/stage/$name/wheels" ] && [ "$TINY" != 1 ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY/stage/$name"/wheels/*.whl
    fi
    touch "$CARRY/$name.ready"
    echo "bundle $name unpacked ($(du -sh "$CARRY/stage/$name" | cut -f1))"
  done < "$CARRY/bundles.txt"
  [ -f "$CARRY/results/gpu_check.log" ] && { echo "--- driver so far:"; tail -n 6 "$CARRY/results/gpu_check.log"; } || true
}

start() {
  receive "$@"
  rm -rf "$CARRY/results" "$CARRY/work" "$CARRY/deadline" "$CARRY/home" "$CARRY"/*.linked && mkdir -p "$CARRY/results" "$CARRY/work"
  # a new session: the driver outlives this call (the machine kills what a call leaves, but not setsid's)
  # it runs from a copy: bash reads a script as it goes, and later calls sync the working tree again
  cp "$REPO/benchmarks/gpu_check.sh" "$CARRY/driver.sh"
  GPU_CHECK_REPO=$REPO setsid nohup bash "$CARRY/driver.sh" driver > "$CARRY/results/driver.out" 2>&1 < /dev/null &
  sleep 5
  echo "driver started (pid $!); log: $CARRY/results/gpu_check.log"
  tail -n 5 "$CARRY/results/gpu_check.log" 2>/dev/null || true
}

wait_driver() {
  local seconds=${1:-560} t0 k=0
  t0=$(date +%s)
  OUT=${OUT:-$REPO/gpu-check-out}
  mkdir -p "$OUT"
  # what is there so far goes to $OUT every 15 s: a call cut short by the device's limit still brings it back
  copy_results() {
    tar -C "$CARRY/results" -cf "$OUT/results.tar.part" --exclude='*.tar.[0-9][0-9]' . 2>/dev/null && mv "$OUT/results.tar.part" "$OUT/results.tar"
    for f in "$CARRY"/results/*.tar.[0-9][0-9]; do [ -f "$f" ] && cp "$f" "$OUT/"; done
    return 0
  }
  while [ ! -f "$CARRY/results/done" ] && [ $(( $(date +%s) - t0 )) -lt "$seconds" ]; do
    sleep 3; k=$((k + 1)); [ $((k % 5)) = 0 ] && copy_results
  done
  copy_results
  if [ -f "$CARRY/results/done" ]; then echo "driver done"; else echo "driver still running after ${seconds}s: call wait again"; fi
  tail -n 40 "$CARRY/results/gpu_check.log"
}

# ---------------------------------------------------------------- the driver (runs there, in the background)
driver() {
  local res=$CARRY/results work=$CARRY/work stage=$CARRY/stage t0 deadline device
  exec >> "$res/gpu_check.log" 2>&1
  t0=$(date +%s); deadline=$((t0 + BUDGET_S))
  export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$REPO DRFHQ_HOME=$CARRY/home DRFHQ_PEER=$stage/bench-train/peer
  mkdir -p "$CARRY/home"
  local bt_res bt_batch bt_steps tr_res tr_batch minutes steps faces workers translate_batch impls snapshot bt_cap monitor=
  run_stage() { [[ " $STAGES " == *" $1 "* ]]; }
  if [ "$TINY" = 1 ]; then
    device=cpu; bt_res=64; bt_batch=2; bt_steps=1; tr_res=64; tr_batch=2; minutes=0.3; steps=2; faces=2; workers=2
    translate_batch=2; snapshot=0.002; bt_cap=900; impls=ours-adversarial,ours-consistency,nvidia-ref
  else
    device=cuda; bt_res=256,1024; bt_batch=8; bt_steps=3; tr_res=${GPU_CHECK_TRAIN_RES:-1024}; tr_batch=16
    minutes=${GPU_CHECK_TRAIN_MINUTES:-4.5}; steps=200; faces=32; workers=8; translate_batch=16
    snapshot=${GPU_CHECK_SNAPSHOT_KIMG:-1}; bt_cap=240; impls=ours-adversarial,ours-consistency,nvidia-custom
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 > "$res/gpu_mem.csv" &
    monitor=$!
    # NVIDIA's custom ops take a minute of nvcc: build them now, while the first bundles arrive
    run_stage bench_train && (while [ ! -f "$CARRY/bench-train.ready" ]; do sleep 2; done; cd "$stage/bench-train/peer"
     python3 -c "import sys; sys.path[:0] = ['$REPO/benchmarks', '.']; import bench_train; bench_train._register_built_extensions()
from torch_utils.ops import bias_act, upfirdn2d; print('NVIDIA custom ops built:', bias_act._init(), upfirdn2d._init())") &
  fi
  echo "driver: $(date -u +%FT%TZ), device $device, budget ${BUDGET_S}s, stages: $STAGES"
  # seconds left; a later call may move the deadline: echo EPOCH_SECONDS > $CARRY/deadline
  left() { [ -f "$CARRY/deadline" ] && deadline=$(cat "$CARRY/deadline"); echo $(( deadline - $(date +%s) )); }
  bundle() {    # NAME [SECONDS]: wait for a bundle (300 s at most), link its weights into the home
    local name=$1 most=${2:-300} k=0
    while [ ! -f "$CARRY/$name.ready" ]; do sleep 2; k=$((k + 2)); [ $k -lt "$most" ] || { echo "bundle $name never came"; return 1; }; done
    if [ -d "$stage/$name/home" ] && [ ! -f "$CARRY/$name.linked" ]; then
      cp -rs "$stage/$name/home/." "$CARRY/home/" && touch "$CARRY/$name.linked"
    fi
    return 0
  }
  step() {      # NAME SECONDS CMD...: a timed stage, its outcome in stages.tsv; a failure does not stop the others
    local name=$1 limit=$2 s rc; shift 2
    [ "$limit" -gt 20 ] || { echo "== $name skipped: ${limit}s left"; printf '%s\t%s\t%s\t%s\n' "$name" 0 0 skipped >> "$res/stages.tsv"; return 0; }
    echo "== $name (at most ${limit}s) $(date -u +%T)"
    s=$(date +%s)
    set +e; timeout --kill-after=10 "$limit" "$@"; rc=$?; set -e
    printf '%s\t%s\t%s\t%s\n' "$name" "$s" "$(date +%s)" "$rc" >> "$res/stages.tsv"
    echo "== $name: exit $rc after $(( $(date +%s) - s ))s"
  }
  local train=$stage/bench-train/data/train held=$stage/transfer/data/held real=$stage/transfer/data/real
  local drfhq="python3 -m drfhq_tools.cli"
  [ "$TINY" = 1 ] && drfhq="$PY -m drfhq_tools.cli"
  local py=python3; [ "$TINY" = 1 ] && py=$PY

  # 1. training speed, ours against NVIDIA's (its custom ops build with nvcc in the first NVIDIA child)
  if run_stage bench_train; then
    bundle bench-train
    step bench_train $(( $(left) - 470 < bt_cap ? $(left) - 470 : bt_cap )) $py benchmarks/bench_train.py --dataset "$train" \
      --resolutions $bt_res --batch $bt_batch --steps $bt_steps --device $device --impls $impls --json "$res/bench_train.json"
  fi

  # 2. the transfer run: as many kimg as fit, leaving AFTER_TRAIN_S for what follows
  if run_stage train; then
    bundle bench-train; bundle transfer
    local train_cmd=($drfhq train "$train" --base mobilestylegan-ffhq --out "$work/train-run" --resolution $tr_res
      --batch $tr_batch --mbstd-group 4 --kimg 1000 --snapshot-kimg $snapshot --freeze-below 8 --grid 6 --device $device
      --workers $workers)
    train_minutes() { "$py" -c "print(round(min($minutes, max(0.2, ($(left) - $AFTER_TRAIN_S - $TRAIN_OVERHEAD_S) / 60)), 2))"; }
    local m; m=$(train_minutes)
    step train $("$py" -c "print(int($m * 60) + $TRAIN_OVERHEAD_S + 40)") "${train_cmd[@]}" --max-minutes "$m" --precision auto
    if [ "$(tail -n 1 "$res/stages.tsv" | awk '{print ($4 != 0 && $3 - $2 < 90)}')" = 1 ]; then
      echo "train (auto precision) failed at once: once more in fp32"
      rm -rf "$work/train-run"; m=$(train_minutes)
      step train_fp32 $("$py" -c "print(int($m * 60) + $TRAIN_OVERHEAD_S + 40)") "${train_cmd[@]}" --max-minutes "$m" --precision fp32
    fi
  fi

  # the run's pictures and curves go to the results now: a wait call made before the driver ends brings them back
  keep_train_pictures() {
    cp "$(ls "$work"/train-run/snapshots/grid-*.png 2>/dev/null | tail -1)" "$res/transfer-grid.png" 2>/dev/null
    cp "$work/train-run/losses.png" "$res/losses.png" 2>/dev/null
    cp "$work/train-run/losses.csv" "$res/losses.csv" 2>/dev/null
    return 0
  }
  run_stage train && keep_train_pictures

  # 2b. or a G_render sent along (bundle g-render) beside G_real as train would write it
  if ! run_stage train && [[ " $BUNDLES " == *" g-render "* ]] && bundle g-render && bundle transfer; then
    mkdir -p "$work/train-run" && cp -r "$stage/g-render/g_render" "$work/train-run/"
    $py -c "from drfhq_tools.gan.mobilestylegan import MobileStyleGAN; from drfhq_tools.gan.networks import save_generator
save_generator(MobileStyleGAN().eval(), '$work/train-run/g_real')" && echo "G_render from the g-render bundle; G_real saved"
  fi

  # 3a. issue #13's space table: translate only, every held render, in the default space w+reg (transfer and
  # project-real), then (time allowing, after bench_translate) w+ and w; bench runs here: bench-spaces-here
  local space_limit=100000 space_steps=$SPACE_STEPS bt_reserve=0 bt_faces=4 nv_steps=300
  [ "$TINY" = 1 ] && { space_limit=2; space_steps=2; bt_faces=1; nv_steps=3; }
  run_stage bench_translate && bt_reserve=${GPU_CHECK_BENCH_TRANSLATE_S:-100}
  spaces() {    # NAME RESERVE ARGS...: one bench_spaces --stage translate call, within what is left less RESERVE
    local name=$1 reserve=$2; shift 2
    step "$name" $(( $(left) - reserve )) $py benchmarks/bench_spaces.py --stage translate --dataset "$held" --ckpt "$work/train-run" \
      --real "$real" --steps $space_steps --limit $space_limit --batch $translate_batch --device $device \
      --project-real-spaces "${GPU_CHECK_PROJECT_REAL_SPACES-w+reg}" "$@"
  }
  if run_stage spaces && bundle transfer && bundle spaces; then
    spaces spaces_wreg $((bt_reserve + 40)) --out "$work/spaces/plain" --spaces w+reg
  fi

  # 3b. inversion against NVIDIA's projector on G_real (MobileStyleGAN at 1024 px), renders as targets
  if run_stage bench_translate && bundle spaces; then
    step bench_translate $(( $(left) - 40 < bt_reserve ? $(left) - 40 : bt_reserve )) $py benchmarks/bench_translate.py \
      --generator "$work/train-run/g_real" --targets "$held/images" --faces $bt_faces --steps $nv_steps --device $device \
      --json "$res/bench_translate.json"
  fi
  local other=${GPU_CHECK_SPACES_OTHER-w+,w}
  [ -n "$other" ] && run_stage spaces && spaces spaces_other 30 --out "$work/spaces/plain" --spaces "$other"

  # 3. translate the held-back renders with the three methods
  if run_stage translate; then
    bundle transfer
    local after_translate=12; run_stage bench && after_translate=75; run_stage features && after_translate=$((after_translate + FEATURES_S))
    step translate $(( $(left) - after_translate )) $drfhq translate "$held" --ckpt "$work/train-run" \
      --out "$work/translated" --method transfer,project-real,layer-swap --steps $steps --limit $faces --lpips-net alex \
      --batch $translate_batch --device $device
  fi

  # 3c. images/s of bench's feature networks on this device (Inception, LPIPS), the renders as input
  if run_stage features && bundle features 10; then
    local f_batch=64 f_limit=256 f_repeats=5; [ "$TINY" = 1 ] && { f_batch=4; f_limit=8; f_repeats=1; }
    step features $(( $(left) - 12 < FEATURES_S ? $(left) - 12 : FEATURES_S )) $py benchmarks/bench_features.py "$train/images" \
      --device $device --batch $f_batch --limit $f_limit --repeats $f_repeats --workers $workers --json "$res/bench_features.json"
  fi

  # 4. bench against the real photos (every metric; features on the GPU)
  if run_stage bench; then
    bundle bench
    step bench $(( $(left) - 15 )) $drfhq bench --dataset "$held" --real "$real" --out "$work/bench" --limit $faces \
      --device $device --identity dlib-torch --workers $workers --cache "$work/cache.sqlite" \
      --baselines "input,color-transfer,transfer=$work/translated/transfer,project-real=$work/translated/project-real,layer-swap=$work/translated/layer-swap"
  fi

  # 4b. the outputs themselves, as JPEG q95 4:4:4 (under 16 MiB), for a bench elsewhere
  if run_stage export && [ -d "$work/translated" ]; then
    mkdir -p "$work/export" && cp -r "$work/translated"/{transfer,project-real,layer-swap} "$work/export/" 2>/dev/null
    rm -rf "$work"/export/*/latents "$work"/export/*/*.json
    recode_images "$work/export" png2jpg
    (cd "$work/export" && tar -cf - . | split -b 15M -d -a 2 - "$res/translated.tar.")
    echo "exported $(ls "$work"/export/*/*.jpg | wc -l) outputs ($(cat "$res"/translated.tar.[0-9][0-9] | wc -c) bytes in $(ls "$res"/translated.tar.[0-9][0-9] | wc -l) pieces)"
  fi

  # 4c. the space table's outputs and tables (PNG, without latents), for bench-spaces-here
  if run_stage export && [ -d "$work/spaces" ]; then
    (cd "$work/spaces" && tar -cf - --exclude=latents --exclude='*.pt' . | split -b 15M -d -a 2 - "$res/spaces.tar.")
    echo "exported the space table's outputs ($(cat "$res"/spaces.tar.[0-9][0-9] | wc -c) bytes in $(ls "$res"/spaces.tar.[0-9][0-9] | wc -l) pieces)"
    # and the G_render they came from (~39 MiB for MobileStyleGAN), so the CPU can go on with it after the lease
    [[ " $BUNDLES " == *" g-render "* ]] || (cd "$work/train-run" && tar -cf - g_render | split -b 15M -d -a 2 - "$res/g_render.tar.")
  fi

  # 5. what comes back
  set +e
  keep_train_pictures
  (cd "$work" && tar -czf "$res/run.tar.gz" --exclude='*.png' --exclude='*.jpg' bench train-run/train-config.json \
     train-run/g_render/generator.json train-run/losses.csv translated/*/provenance.json translated/translate.parquet 2>/dev/null)
  $py "$REPO/benchmarks/gpu_check_summary.py" --carry "$CARRY" --device "$device" --faces $faces --steps $steps \
    --renders-as "$([ "$JPEG" = 1 ] && echo jpeg || echo png)"
  set -e
  [ -n "$monitor" ] && kill "$monitor" 2>/dev/null
  touch "$res/done"
  echo "driver: done at $(date -u +%T), $(( $(date +%s) - t0 ))s"
}

bench_here() {   # FILES DATASET [REAL]: bench the outputs a GPU run sent back, here, on the held-back renders it used
  local files=${1:?bench-here: the folder the device files came back in} dataset=${2:?bench-here: the dataset that was packed}
  local real=${3:-../shared/fixtures/real} work
  ls "$files"/translated.tar.[0-9][0-9] > /dev/null 2>&1 || { echo "bench-here: no translated.tar.00 in $files" >&2; exit 2; }
  work=$files-bench && rm -rf "$work" && mkdir -p "$work/outputs"
  split_dataset "$dataset" "$work/train" "$work/held" 32 > /dev/null && rm -rf "$work/train"
  recode_images "$work/held" png2jpg && recode_images "$work/held" jpg2png     # what the GPU machine saw
  cat "$files"/translated.tar.[0-9][0-9] | tar -C "$work/outputs" -xf -
  "$PY" -m drfhq_tools.cli bench --dataset "$work/held" --real "$real" --out "$work/bench" --identity dlib-torch \
    --baselines "input,color-transfer,transfer=$work/outputs/transfer,project-real=$work/outputs/project-real,layer-swap=$work/outputs/layer-swap"
}

bench_spaces_here() {   # FILES DATASET [REAL]: score the space table's outputs a GPU run sent back (spaces.tar.NN)
  local files=${1:?bench-spaces-here: the folder the device files came back in} dataset=${2:?bench-spaces-here: the dataset that was packed}
  local real=${3:-../shared/fixtures/real} work out spaces s
  ls "$files"/spaces.tar.[0-9][0-9] > /dev/null 2>&1 || { echo "bench-spaces-here: no spaces.tar.00 in $files" >&2; exit 2; }
  work=$files-spaces && rm -rf "$work" && mkdir -p "$work"
  cat "$files"/spaces.tar.[0-9][0-9] | tar -C "$work" -xf -
  if ls "$files"/g_render.tar.[0-9][0-9] > /dev/null 2>&1; then     # the G_render that made them
    cat "$files"/g_render.tar.[0-9][0-9] | tar -C "$files-spaces" -xf - && echo "G_render: $files-spaces/g_render"
  fi
  for out in "$work"/*/; do
    spaces=""
    for s in w w+ w+reg $(cd "$out" && ls -d w+reg@* 2>/dev/null); do [ -d "$out/$s/transfer" ] && spaces="$spaces${spaces:+,}$s"; done
    [ -n "$spaces" ] || continue
    "$PY" benchmarks/bench_spaces.py --stage bench --dataset "$dataset" --real "$real" --out "$out" --spaces "$spaces" \
      --project-real-spaces w+reg --limit 100000 | tee "$out/bench_spaces.txt"
  done
}

run_tiny() {   # the rehearsal: every call in turn, here, at CPU sizes
  local dataset=${DATASET:-$(ls -d /tmp/pytest-of-*/pytest-*/fixture_dataset0 2>/dev/null | tail -1)} part
  [ -f "$dataset/manifest.parquet" ] || { echo "run --tiny: set DATASET to a built dataset" >&2; exit 2; }
  export GPU_CHECK_TINY=1 DRFHQ_CARRY=${DRFHQ_CARRY:-$(mktemp -d)} GPU_CHECK_BUDGET_S=${GPU_CHECK_BUDGET_S:-1500}
  PART_MIB=${PART_MIB:-60} bash "$0" pack "$dataset" "${REAL:-../shared/fixtures/real}"
  bash "$0" start .gpu-carry/part-1
  for part in $(ls -d .gpu-carry/part-* | sort -V | tail -n +2); do bash "$0" receive "$part"; done
  bash "$0" wait 1500
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  start) shift; start "$@" ;;
  receive) shift; receive "$@" ;;
  wait) shift; wait_driver "$@" ;;
  deadline) echo $(( $(date +%s) + ${2:?deadline: seconds from now} )) > "$CARRY/deadline"; echo "driver deadline in $2 s" ;;
  bench-here) shift; bench_here "$@" ;;
  bench-spaces-here) shift; bench_spaces_here "$@" ;;
  driver) driver ;;
  run) [ "${2:-}" = "--tiny" ] || { echo "run: only --tiny (the GPU run is start/receive/wait)" >&2; exit 2; }; run_tiny ;;
  *) echo "usage: $0 pack [DATASET] [REAL] | start PART | receive PART | deadline SECONDS | wait [SECONDS] | bench-here FILES DATASET [REAL] | bench-spaces-here FILES DATASET [REAL] | run --tiny" >&2; exit 2 ;;
esac

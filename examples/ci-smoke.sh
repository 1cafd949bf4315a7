#!/usr/bin/env bash
# Smoke-test an image pipeline in CI without downloading weights:
# build a tiny random-weight checkpoint, generate with it, check the PNG metadata.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sdcli tiny "$work/tiny"
sdcli txt2img -m "$work/tiny" --steps 2 --seed 7 --sampler "Euler a" \
    -o "$work/out" --json "smoke test, (tiny:1.2)" > "$work/records.jsonl"

path=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["path"])' < "$work/records.jsonl")
test -s "$path"
python3 - "$path" <<'PY'
import sys
from PIL import Image
params = Image.open(sys.argv[1]).info["parameters"]
assert "Seed: 7" in params and "Sampler: Euler a" in params, params
print("ok:", sys.argv[1])
PY

# Image inputs: img2img on that picture, then inpaint its centre with a 9-channel inpainting checkpoint.
sdcli img2img -m "$work/tiny" -i "$path" --strength 0.5 --steps 4 --seed 7 -o "$work/out" "smoke test"
sdcli tiny --inpaint "$work/tiny-inpaint"
python3 - "$work/mask.png" <<'PY'
import sys
from PIL import Image
mask = Image.new("L", (64, 64), 0)
mask.paste(255, (16, 16, 48, 48))
mask.save(sys.argv[1])
PY
sdcli inpaint -m "$work/tiny-inpaint" -i "$path" --mask "$work/mask.png" --steps 2 --seed 7 -o "$work/out" "smoke"
echo "ok: img2img and inpaint"

"""The corpus: every command the behaviour corpus runs, in order, as a user would type it.

Placeholders are filled with folders under the run's root (see test_corpus.py); ids name the
records in corpus.json. Add a command at the end of its group and re-record.
"""

from __future__ import annotations

import json

# Placeholders in the commands: {m} tiny models, {d} a WebUI-style models folder (Lora/, embeddings/,
# VAE/, ControlNet/, ESRGAN/), {i} input pictures and prompt files, {out} all outputs, {o} this
# command's own output folder, {server} the running `sdcli serve`. Every command writes under {o}
# unless it names another place to watch.
FAST = "--steps 3 -W 32 -H 32 --seed 5"
SD1 = "-m {m}/tiny-sd1"
XL = "-m {m}/tiny-xl"
MD = "--models-dir {d}"

# (id, command, watched path): `sdcli tiny` first, then everything that uses the models.
MODELS: list[tuple[str, ...]] = [
    ("tiny-sd1", "sdcli tiny {m}/tiny-sd1", "{m}/tiny-sd1"),
    ("tiny-sd1-inpaint", "sdcli tiny --inpaint {m}/tiny-sd1-inpaint", "{m}/tiny-sd1-inpaint"),
    ("tiny-sd2", "sdcli tiny --arch sd2 --seed 3 {m}/tiny-sd2", "{m}/tiny-sd2"),
    ("tiny-sdxl", "sdcli tiny --arch sdxl {m}/tiny-xl", "{m}/tiny-xl"),
    ("tiny-sdxl-refiner", "sdcli tiny --arch sdxl-refiner {m}/tiny-xl-refiner", "{m}/tiny-xl-refiner"),
    ("tiny-sd1-single-file", "sdcli tiny --seed 1 --single-file {m}/tiny-sd1b.safetensors",
     "{m}/tiny-sd1b.safetensors"),
    ("tiny-controlnet-single-file", "sdcli tiny --controlnet --single-file {d}/ControlNet/control_tiny.safetensors",
     "{d}/ControlNet/control_tiny.safetensors"),
    ("tiny-controlnet-folder", "sdcli tiny --controlnet --seed 2 {m}/tiny-cn", "{m}/tiny-cn"),
    ("tiny-upscaler-4x", "sdcli tiny --upscaler {d}/ESRGAN/tiny-4x.safetensors", "{d}/ESRGAN/tiny-4x.safetensors"),
    ("tiny-upscaler-2x", "sdcli tiny --upscaler --upscaler-scale 2 --seed 1 {d}/ESRGAN/tiny-2x.safetensors",
     "{d}/ESRGAN/tiny-2x.safetensors"),
]

# (id, command[, watched path]): in-process through the Typer app, in this order (replay and info read
# files that earlier commands wrote).
CLI: list[tuple[str, ...]] = [
    # txt2img: samplers and schedule types
    ("txt2img-default-dpmpp-2m", f"sdcli txt2img {SD1} {FAST} -o {{o}} 'a red fox'"),
    ("txt2img-euler-a", f"sdcli txt2img {SD1} {FAST} --sampler 'Euler a' -o {{o}} 'a red fox'"),
    ("txt2img-euler-karras", f"sdcli txt2img {SD1} {FAST} --sampler Euler --schedule karras -o {{o}} 'a red fox'"),
    ("txt2img-dpmpp-sde", f"sdcli txt2img {SD1} {FAST} --sampler 'DPM++ SDE' -o {{o}} 'a red fox'"),
    ("txt2img-dpmpp-2s-a-exponential",
     f"sdcli txt2img {SD1} {FAST} --sampler 'DPM++ 2S a' --schedule exponential -o {{o}} 'a red fox'"),
    ("txt2img-dpmpp-2m-sde", f"sdcli txt2img {SD1} {FAST} --sampler 'DPM++ 2M SDE' -o {{o}} 'a red fox'"),
    ("txt2img-dpmpp-3m-sde-ays",
     f"sdcli txt2img {SD1} {FAST} --sampler 'DPM++ 3M SDE' --schedule align-your-steps -o {{o}} 'a red fox'"),
    ("txt2img-ddim", f"sdcli txt2img {SD1} {FAST} --sampler DDIM -o {{o}} 'a red fox'"),
    ("txt2img-unipc", f"sdcli txt2img {SD1} {FAST} --sampler UniPC -o {{o}} 'a red fox'"),
    ("txt2img-lcm", f"sdcli txt2img {SD1} {FAST} --sampler LCM --cfg-scale 1.5 -o {{o}} 'a red fox'"),
    ("txt2img-heun-sgm-uniform",
     f"sdcli txt2img {SD1} {FAST} --sampler Heun --schedule sgm-uniform -o {{o}} 'a red fox'"),
    ("txt2img-lms-polyexponential",
     f"sdcli txt2img {SD1} {FAST} --sampler LMS --schedule polyexponential -o {{o}} 'a red fox'"),
    ("txt2img-dpm2-a-beta", f"sdcli txt2img {SD1} {FAST} --sampler 'DPM2 a' --schedule beta -o {{o}} 'a red fox'"),
    ("txt2img-plms", f"sdcli txt2img {SD1} {FAST} --sampler PLMS -o {{o}} 'a red fox'"),
    ("txt2img-restart", f"sdcli txt2img {SD1} --steps 4 -W 32 -H 32 --seed 5 --sampler Restart -o {{o}} 'a red fox'"),
    ("txt2img-euler-churn-eta-ensd",
     f"sdcli txt2img {SD1} {FAST} --sampler 'Euler a' --eta 0.7 --ensd 31337 --s-noise 0.9 -o {{o}} 'a red fox'"),
    # txt2img: prompt, guidance and seeds
    ("txt2img-cfg-negative-emphasis",
     f"sdcli txt2img {SD1} {FAST} --cfg-scale 4.5 -n 'blurry, (lowres:1.4)' -o {{o}} "
     "'a (red:1.3) fox [in snow], BREAK a forest'"),
    ("txt2img-prompt-editing", f"sdcli txt2img {SD1} {FAST} -o {{o}} 'a [cat:dog:0.5] AND a hat :0.7'"),
    ("txt2img-clip-skip-2", f"sdcli txt2img {SD1} {FAST} --clip-skip 2 -o {{o}} 'a red fox'"),
    ("txt2img-variation-seed",
     f"sdcli txt2img {SD1} {FAST} --subseed 77 --subseed-strength 0.3 -o {{o}} 'a red fox'"),
    ("txt2img-batch-size-count-json",
     f"sdcli txt2img {SD1} {FAST} --batch-size 2 --count 2 --name '[seed]-[sampler]-[prompt_words]' --json "
     "-o {o} 'a red fox'"),
    ("txt2img-format-jpeg", f"sdcli txt2img {SD1} {FAST} --format jpeg --quality 85 -o {{o}} 'a red fox'"),
    ("txt2img-format-webp", f"sdcli txt2img {SD1} {FAST} --format webp -o {{o}} 'a red fox'"),
    # add-ons
    ("txt2img-lora-tag", f"sdcli txt2img {SD1} {MD} {FAST} -o {{o}} 'a cat <lora:detail:0.8>'"),
    ("txt2img-lora-flag-and-embedding",
     f"sdcli txt2img {SD1} {MD} {FAST} --lora {{d}}/Lora/detail.safetensors:0.5 -o {{o}} 'a tinyemb cat'"),
    ("txt2img-vae", f"sdcli txt2img {SD1} {FAST} --vae {{d}}/VAE/tinyvae.safetensors -o {{o}} 'a red fox'"),
    ("txt2img-controlnet-canny",
     f"sdcli txt2img {SD1} {MD} {FAST} --controlnet control_tiny --control-image {{i}}/ring.png "
     "--preprocessor canny -o {o} 'a round window'"),
    ("txt2img-controlnet-two-units",
     f"sdcli txt2img {SD1} {FAST} --controlnet {{m}}/tiny-cn --control-image {{i}}/ring.png --preprocessor lineart "
     "--controlnet {d}/ControlNet/control_tiny.safetensors --control-image {i}/photo.png --preprocessor none "
     "--control-weight 0.6 --control-weight 1.2 --control-end 0.5 --control-mode prompt --control-resize fill "
     "-o {o} 'two units'"),
    # hires fix
    ("txt2img-hires-latent", f"sdcli txt2img {SD1} {FAST} --hires --hires-steps 2 -o {{o}} 'a castle'"),
    ("txt2img-hires-lanczos-size",
     f"sdcli txt2img {SD1} {FAST} --hires --hires-size 48x40 --hires-upscaler Lanczos --hires-denoise 0.5 "
     "--hires-sampler Euler --hires-prompt 'a castle, detailed' -o {o} 'a castle'"),
    ("txt2img-hires-esrgan",
     f"sdcli txt2img {SD1} {FAST} --hires --hires-scale 1.5 --hires-steps 2 "
     "--hires-upscaler {d}/ESRGAN/tiny-4x.safetensors -o {o} 'a castle'"),
    # other families and single files
    ("txt2img-sd2-v", "sdcli txt2img -m {m}/tiny-sd2 " + FAST + " --sampler 'Euler a' -o {o} 'a red fox'"),
    ("txt2img-sdxl", f"sdcli txt2img {XL} {FAST} -n fog -o {{o}} 'a red fox'"),
    ("txt2img-sdxl-refiner",
     f"sdcli txt2img {XL} {FAST} --refiner {{m}}/tiny-xl-refiner --refiner-switch 0.5 -o {{o}} 'a red fox'"),
    ("txt2img-single-file", f"sdcli txt2img -m {{m}}/tiny-sd1b.safetensors {FAST} -o {{o}} 'a red fox'"),
    # img2img, inpaint, outpaint
    ("img2img", f"sdcli img2img {SD1} -i {{i}}/photo.png --steps 3 --seed 7 --strength 0.6 -o {{o}} 'a painting'"),
    ("img2img-resize-crop-euler-a",
     f"sdcli img2img {SD1} -i {{i}}/photo.png --steps 4 --seed 7 -W 32 -H 48 --resize crop --sampler 'Euler a' "
     "-o {o} 'a painting'"),
    ("img2img-folder-json",
     f"sdcli img2img {SD1} -i {{i}}/photos --steps 2 --seed 10 --json -o {{o}} 'an oil painting'"),
    ("img2img-folder-corrupt-input",
     f"sdcli img2img {SD1} -i {{i}}/photos-bad --steps 2 --seed 10 -o {{o}} 'an oil painting'"),
    ("img2img-controlnet",
     f"sdcli img2img {SD1} -i {{i}}/photo.png --steps 3 --seed 7 --controlnet {{m}}/tiny-cn "
     "--control-image {i}/ring.png --preprocessor scribble -o {o} 'a round window'"),
    ("img2img-sdxl-refiner",
     f"sdcli img2img {XL} -i {{i}}/photo.png --steps 4 --seed 7 --strength 0.7 "
     "--refiner {m}/tiny-xl-refiner -o {o} 'a painting'"),
    ("inpaint-whole",
     f"sdcli inpaint {SD1} -i {{i}}/photo.png --mask {{i}}/mask.png --steps 3 --seed 4 -o {{o}} 'a cat'"),
    ("inpaint-masked-area-fill",
     f"sdcli inpaint {SD1} -i {{i}}/photo.png --mask {{i}}/mask.png --steps 3 --seed 4 --inpaint-area masked "
     "--padding 8 --masked-content fill --strength 0.6 -W 32 -H 32 -o {o} 'blue eyes'"),
    ("inpaint-invert-latent-noise",
     f"sdcli inpaint {SD1} -i {{i}}/photo.png --mask {{i}}/mask.png --steps 3 --seed 4 --invert-mask "
     "--mask-blur 2 --masked-content latent-noise -o {o} 'a cat'"),
    ("inpaint-inpainting-model",
     "sdcli inpaint -m {m}/tiny-sd1-inpaint -i {i}/photo.png --mask {i}/mask.png --steps 3 --seed 4 "
     "--masked-content latent-nothing -o {o} 'smoke'"),
    ("outpaint-left-right-blur",
     f"sdcli outpaint {SD1} -i {{i}}/photo.png --left 16 --right 8 --fill blur --steps 3 --seed 5 -o {{o}} "
     "'a wide beach'"),
    ("outpaint-inpainting-model-up-down",
     "sdcli outpaint -m {m}/tiny-sd1-inpaint -i {i}/photo.png --expand 8 --direction up,down --steps 3 --seed 5 "
     "-o {o} 'a cathedral'"),
    # many requests
    ("batch-webui-prompt-file", f"sdcli batch {{i}}/prompts.txt {SD1} --steps 2 -W 32 -H 32 --seed 1 -o {{o}}"),
    ("batch-jsonl-grid-json",
     f"sdcli batch {{i}}/prompts.jsonl {SD1} --steps 2 -W 32 -H 32 --seed 9 --grid --json -o {{o}}"),
    ("xyz-sampler-cfg",
     f"sdcli xyz 'a red fox' {SD1} --steps 2 -W 32 -H 32 --seed 1 --x 'Sampler: Euler a, DDIM' "
     "--y 'CFG Scale: 3, 6' -o {o}"),
    ("xyz-steps-prompt-sr-json",
     f"sdcli xyz 'a red fox' {SD1} -W 32 -H 32 --seed 2 --x 'Steps: 2, 3' --y 'Prompt S/R: red, blue' "
     "--z 'Seed: 2, 3' --json -o {o}"),
    ("xyz-hires", f"sdcli xyz 'a castle' {SD1} --steps 2 -W 32 -H 32 --seed 1 --hires --hires-scale 1.5 "
                  "--x 'Hires steps: 1, 2' --y 'Hires upscaler: Latent, Lanczos' -o {o}"),
    # upscale, replay, info
    ("upscale-lanczos", "sdcli upscale {i}/photo.png --scale 2 -o {o}"),
    ("upscale-esrgan-size-json",
     "sdcli upscale {i}/photo.png --upscaler {d}/ESRGAN/tiny-2x.safetensors --size 80x64 --json -o {o}"),
    ("upscale-folder-nearest", "sdcli upscale {i}/photos --upscaler Nearest --scale 1.5 -o {o}"),
    ("replay", "sdcli replay {out}/txt2img-euler-a/00000-5.png -o {o}"),
    ("replay-overrides-hires", "sdcli replay {out}/txt2img-hires-latent/00000-5.png --seed 6 --steps 2 -o {o}"),
    ("replay-lora", f"sdcli replay {{out}}/txt2img-lora-tag/00000-5.png {MD} -o {{o}}"),
    ("info-json", "sdcli info --json {out}/txt2img-variation-seed/00000-5.png {out}/txt2img-format-webp/00000-5.webp"),
    ("grid-contact-sheet",
     "sdcli grid {out}/batch-webui-prompt-file/manifest.jsonl --columns 4 -o {out}/grid-contact-sheet.png",
     "{out}/grid-contact-sheet.png"),
    ("samplers-json", "sdcli samplers --json"),
    ("models-json", "sdcli models --models-dir {d} --json"),
    # refused before anything loads: exit 2, nothing written
    ("refused-bad-steps", f"sdcli txt2img {SD1} --steps 0 -o {{o}} 'x'"),
    ("refused-bad-sampler", f"sdcli img2img {SD1} -i {{i}}/photo.png --sampler 'No such' -o {{o}} 'x'"),
]

# The WebUI API of `sdcli serve -m {m}/tiny-sd1 -m {m}/tiny-sd1-inpaint` and the --server client.
# "b64:PATH" strings in a request body become that file's base64.
HTTP_TXT = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 7, "steps": 3, "width": 32, "height": 32,
            "sampler_name": "Euler a", "cfg_scale": 6.5, "batch_size": 2}
SERVER: list[tuple[str, ...]] = [
    ("http-txt2img", "POST /sdapi/v1/txt2img " + json.dumps(HTTP_TXT)),
    ("http-txt2img-hires", "POST /sdapi/v1/txt2img " + json.dumps(
        {**HTTP_TXT, "batch_size": 1, "scheduler": "karras", "enable_hr": True, "hr_scale": 1.5,
         "hr_upscaler": "Lanczos", "hr_second_pass_steps": 2, "denoising_strength": 0.6})),
    ("http-img2img", "POST /sdapi/v1/img2img " + json.dumps(
        {"prompt": "a cat", "init_images": ["b64:{i}/photo.png"], "denoising_strength": 0.5, "seed": 9,
         "steps": 3, "width": 48, "height": 40, "sampler_name": "DPM++ 2M"})),
    ("http-img2img-inpaint", "POST /sdapi/v1/img2img " + json.dumps(
        {"prompt": "a cat", "init_images": ["b64:{i}/photo.png"], "mask": "b64:{i}/mask.png", "seed": 9,
         "denoising_strength": 0.6, "inpainting_fill": 1, "mask_blur": 2, "steps": 3, "width": 48, "height": 40})),
    ("client-txt2img", f"sdcli txt2img --server {{server}} {SD1} {FAST} --sampler 'Euler a' -o {{o}} 'a red fox'"),
    ("client-txt2img-hires",
     f"sdcli txt2img --server {{server}} {SD1} {FAST} --hires --hires-scale 1.5 --hires-upscaler 'Latent (bicubic)' "
     "--hires-steps 2 --json -o {o} 'a castle'"),
    ("client-inpaint",
     f"sdcli inpaint --server {{server}} {SD1} -i {{i}}/photo.png --mask {{i}}/mask.png --steps 3 --seed 4 "
     "-o {o} 'a cat'"),
]

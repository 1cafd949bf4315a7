"""Shared Annotated option types, so every command spells a flag the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.request.fields import allowed as r
from sdcli.request.storage import QUANTIZE
from sdcli.request.vocabulary import LOW_BITS
from sdcli.sampling.samplers import DEFAULT_SAMPLER

GEN = "Generation"
MODEL = "Model and hardware"
OUT = "Output"

Prompt = Annotated[str | None, typer.Argument(help="What to draw (WebUI prompt syntax); - reads it from stdin.",
                                              show_default=False)]
PromptOpt = Annotated[str | None, typer.Option("--prompt", "-p", help="The prompt, as an option (- = stdin).",
                                                  rich_help_panel=GEN, show_default=False)]
Negative = Annotated[str, typer.Option("--negative-prompt", "-n", help="What to avoid.", rich_help_panel=GEN)]
Steps = Annotated[int | None, typer.Option(
    "--steps", "-s", help=f"Sampling steps ({r('steps')}) [default: the model family's: 20; Flux schnell and Flux.2 "
    "klein 4, Z-Image 8, SD3 28, Chroma 35, Flux.2 klein base 50]", rich_help_panel=GEN, show_default=False)]
Cfg = Annotated[float | None, typer.Option("--cfg-scale", "-c", help=f"Classifier-free guidance scale "
                                           f"({r('cfg_scale')}) [default: the model family's: 7; Flux 1]",
                                           rich_help_panel=GEN, show_default=False)]
DistilledCfg = Annotated[float | None, typer.Option(
    "--distilled-cfg", help=f"Distilled guidance of guidance-distilled models such as Flux dev, Forge's 'Distilled CFG "
    f"Scale' ({r('distilled_cfg_scale')}) [default: the model's: Flux dev 3.5]", rich_help_panel=GEN,
    show_default=False)]
Shift = Annotated[float | None, typer.Option(
    "--shift", help=f"Sigma shift of a flow model's schedule ({r('shift')}; written as `Shift`) [default: the "
    "model's own]", rich_help_panel=GEN, show_default=False)]
ModelSampling = Annotated[str | None, typer.Option(
    "--model-sampling", help="A flow model's sigmas as ComfyUI's ModelSampling node sets them: auraflow "
    "(ModelSamplingAuraFlow: 1000 discrete flow sigmas shifted by --shift, default 1.73, the network's timestep "
    "sigma) or sd3 (ModelSamplingSD3: likewise, default shift 3, timestep sigma x 1000); written as `Model sampling` "
    "[default: the model's own]", rich_help_panel=GEN, show_default=False)]
ZeroNegative = Annotated[bool, typer.Option(
    "--zero-negative", help="The unconditional pass conditioned on zeros shaped as the negative prompt's "
    "conditioning, pooled vector included (ComfyUI's ConditioningZeroOut)", rich_help_panel=GEN)]
ComfyEdit = Annotated[bool, typer.Option(
    "--comfy-edit", help="sdcli edit: the reference images sized and resized as ComfyUI's edit nodes do "
    "(Qwen-Image-Edit: TextEncodeQwenImageEdit(Plus)'s area resizes, its vision input as ComfyUI prepares it), "
    "not as diffusers' edit pipelines do; written as `Comfy edit`", rich_help_panel=GEN)]
ReferenceScale = Annotated[str | None, typer.Option(
    "--reference-scale", metavar="'METHOD MEGAPIXELS STEPS'", help="sdcli edit on Flux.2: each reference image "
    "scaled as ComfyUI's ImageScaleToTotalPixels before its VAEEncode (METHOD nearest-exact, bilinear, area, bicubic "
    "or lanczos; sides round(side x scale / STEPS) x STEPS; the VAE cuts it to whole 16 px cells), the edit at the "
    "first one's scaled size in whole cells, its Flux2 schedule sized by the exact pixels; written as "
    "`Reference scale` [default: diffusers' sizing]", rich_help_panel=GEN, show_default=False)]
UpsamplePrompt = Annotated[float | None, typer.Option(
    "--upsample-prompt", metavar="TEMPERATURE", help=f"Flux.2 dev: its text encoder rewrites the prompt, sampling at "
    f"this temperature ({r('upsample_prompt')}; 0.15 advised), seeded by the image's seed, before encoding it "
    "(diffusers' caption upsampling; written as `Prompt upsampling` and `Upsampled prompt`)", rich_help_panel=GEN,
    show_default=False)]
CfgNorm = Annotated[float | None, typer.Option(
    "--cfg-norm", help=f"ComfyUI's CFGNorm at this strength ({r('cfg_norm')}): after CFG each latent pixel's "
    "prediction is scaled down to at most the prompt's own prediction's norm, then times the strength (sdcli's "
    "loop); written as `CFG norm` [default: off]", rich_help_panel=GEN, show_default=False)]
Seed = Annotated[int | None, typer.Option("--seed", help=f"Seed ({r('seed')}); none or -1 = random (the seed used is "
                                             "reported).",
                                             rich_help_panel=GEN, show_default=False)]
Subseed = Annotated[int | None, typer.Option("--subseed", help=f"Variation seed ({r('subseed')}); none or -1 = "
                                             "random when --subseed-strength > 0.", rich_help_panel=GEN,
                                             show_default=False)]
SubseedStrength = Annotated[float, typer.Option("--subseed-strength", help="How far to move towards the variation "
                                                f"seed's noise ({r('subseed_strength')}, spherical interpolation).",
                                                rich_help_panel=GEN)]
Width = Annotated[int | None, typer.Option("--width", "-W", help=f"Width, {r('width')}, multiple of 8 (default: "
                                              "the model's native size; with --image, the image's rounded to a "
                                              "multiple of 8).",
                                              rich_help_panel=GEN, show_default=False)]
Height = Annotated[int | None, typer.Option("--height", "-H", help=f"Height, {r('height')}, multiple of 8 (default "
                                               "as --width).",
                                               rich_help_panel=GEN, show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b",
                                        help=f"Images generated in parallel ({r('batch_size')}).",
                                        rich_help_panel=GEN)]
Count = Annotated[int, typer.Option("--count", help=f"Batches run one after another ({r('count')}).",
                                    rich_help_panel=GEN)]
Sampler = Annotated[str | None, typer.Option("--sampler", help="WebUI sampler name, e.g. 'Euler a', 'DPM++ 2M "
                                             "Karras' (see `sdcli samplers`) [default: the model family's: "
                                             f"{DEFAULT_SAMPLER}; Flux Euler]", rich_help_panel=GEN,
                                             show_default=False)]
Schedule = Annotated[str | None, typer.Option("--schedule", help="WebUI schedule type: automatic, uniform, karras, "
                                              "exponential, polyexponential, sgm-uniform, kl-optimal, "
                                              "align-your-steps, simple, normal, ddim, beta; flux2 (Flux.2's own: "
                                              "ComfyUI's Flux2Scheduler) [default: the model family's: automatic; "
                                              "Flux simple; Flux.2 flux2]", rich_help_panel=GEN,
                                              show_default=False)]
Tiling = Annotated[bool, typer.Option("--tiling", help="An image that tiles: its left edge continues its right, its "
                                      "top its bottom (the WebUI's Tiling; written as `Tiling: True`).",
                                      rich_help_panel=GEN)]
RestoreFaces = Annotated[str | None, typer.Option(
    "--restore-faces", help="Restore faces after decoding, as the WebUI: gfpgan, codeformer or none (a model file "
    "in the models folder's GFPGAN/ or Codeformer/; faces found by facexlib: pip install 'sdcli[faces]'; written "
    "as `Face restoration`).", rich_help_panel=GEN, show_default=False)]
CodeFormerWeight = Annotated[float, typer.Option(
    "--code-former-weight", help=f"CodeFormer's weight ({r('code_former_weight')}; 0 = strongest restoration).",
    rich_help_panel=GEN)]
ClipSkip = Annotated[int, typer.Option("--clip-skip", help="WebUI CLIP skip: 1 = last layer, 2 = penultimate "
                                       f"({r('clip_skip')}).",
                                       rich_help_panel=GEN)]
# -- The WebUI settings that change pixels (its Settings > Sampler parameters) ---------------
WEBUI = "WebUI sampler settings"
Rng = Annotated[str, typer.Option("--rng", help="Noise source, the WebUI's 'Random number generator source' (RNG "
                                  "key): cpu, gpu, nv (NVIDIA GPU noise computed on any device; the WebUI's "
                                  "default GPU source on NVIDIA cards), or comfy (ComfyUI's noise and model sampling, "
                                  "as replaying a ComfyUI image uses).", rich_help_panel=WEBUI)]
Emphasis = Annotated[str, typer.Option("--emphasis", help="How (word:1.2) weights apply: original (multiply, then "
                                       "restore the mean), 'no norm' (multiply), none (brackets are text), comfy "
                                       "(ComfyUI's: from the empty prompt's state, its grammar).",
                                       rich_help_panel=WEBUI)]
Eta = Annotated[float | None, typer.Option("--eta", help=f"Noise multiplier of ancestral and SDE samplers "
                                           f"({r('eta')}) [default: 1]", rich_help_panel=WEBUI, show_default=False)]
Ensd = Annotated[int, typer.Option("--ensd", help="Eta noise seed delta: sampler noise is seeded seed + ENSD "
                                   f"({r('ensd')}; the WebUI's NAI-style setting is 31337).", rich_help_panel=WEBUI)]
SChurn = Annotated[float, typer.Option("--s-churn", help=f"Sigma churn (Euler, Heun, DPM2; {r('s_churn')}).",
                                       rich_help_panel=WEBUI)]
STmin = Annotated[float, typer.Option("--s-tmin", help=f"Sigma tmin: churn only above this sigma ({r('s_tmin')}).",
                                      rich_help_panel=WEBUI)]
STmax = Annotated[float, typer.Option("--s-tmax", help=f"Sigma tmax: churn only below this sigma ({r('s_tmax')}; "
                                      "0 = no limit).",
                                      rich_help_panel=WEBUI)]
SNoise = Annotated[float, typer.Option("--s-noise", help=f"Sigma noise: scale of the added noise ({r('s_noise')}).",
                                       rich_help_panel=WEBUI)]
SigmaMin = Annotated[float, typer.Option("--sigma-min", help=f"Schedule min sigma ({r('sigma_min')}; 0 = the model's).",
                                         rich_help_panel=WEBUI)]
SigmaMax = Annotated[float, typer.Option("--sigma-max", help=f"Schedule max sigma ({r('sigma_max')}; 0 = the model's).",
                                         rich_help_panel=WEBUI)]
Model = Annotated[str | None, typer.Option(
    "--model", "-m", envvar="SDCLI_MODEL", show_default=False, rich_help_panel=MODEL,
    help="Local diffusers folder, WebUI single-file .safetensors or hub id [default: built-in tiny random-weight "
    "demo model]")]
PredictionType = Annotated[str | None, typer.Option(
    "--prediction-type", help="What the model predicts: eps or v (default: the model's own; for SD 2.x single "
    "files a guess, see README).", rich_help_panel=MODEL, show_default=False)]
Refiner = Annotated[str | None, typer.Option(
    "--refiner", help="SDXL refiner (or other SDXL model) that runs the last steps.", rich_help_panel=MODEL,
    show_default=False)]
RefinerSwitch = Annotated[float, typer.Option(
    "--refiner-switch", help="Fraction of the steps after which the --refiner takes over "
    f"({r('refiner_switch')}).",
    rich_help_panel=MODEL)]
Offline = Annotated[bool, typer.Option("--offline", help="Never use the network (also HF_HUB_OFFLINE=1).",
                                       rich_help_panel=MODEL)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.", rich_help_panel=MODEL)]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or fp32.",
                                    rich_help_panel=MODEL)]
Slicing = Annotated[str, typer.Option("--attention-slicing", help="auto (only where attention would not fit: "
                                      "never with SDPA on CUDA/CPU), on or off.", rich_help_panel=MODEL)]
VaeTiling = Annotated[str, typer.Option("--vae-tiling", help="Decode in tiles: auto (only when one image's "
                                        "decode would not fit in free memory), on or off.", rich_help_panel=MODEL)]
CpuOffload = Annotated[str, typer.Option("--cpu-offload", help="CUDA: keep weights in CPU memory; auto (only "
                                         "where the model would not fit in free VRAM), none, model (whole models moved "
                                         "in turn) or sequential (layer by layer, least VRAM, slowest).",
                                         rich_help_panel=MODEL)]
Compile = Annotated[bool, typer.Option("--compile", help="CUDA: torch.compile the UNet and VAE decoder (slow first "
                                       "image, faster after).", rich_help_panel=MODEL)]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="channels_last memory layout for UNet and VAE.",
                                            rich_help_panel=MODEL)]
Tf32 = Annotated[bool, typer.Option("--tf32", help="CUDA: allow TF32 matmuls (fp32/bf16 runs on Ampere or newer).",
                                    rich_help_panel=MODEL)]
FuseQkv = Annotated[bool, typer.Option("--fuse-qkv", help="Fuse attention Q/K/V projections (diffusers, "
                                       "experimental).", rich_help_panel=MODEL)]
Server = Annotated[str | None, typer.Option("--server", envvar="SDCLI_SERVER", show_default=False,
                                            rich_help_panel=MODEL, help="Send the job to a running `sdcli serve` "
                                            "at this URL (no local model load); also SDCLI_SERVER.")]
Xformers = Annotated[bool, typer.Option("--xformers", help="Use xformers attention (needs the [xformers] extra); "
                                        "default is PyTorch SDPA.", rich_help_panel=MODEL)]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output folder.", rich_help_panel=OUT)]
Name = Annotated[str, typer.Option("--name", help="File name pattern; fields [num] [seed] [steps] [cfg] [sampler] "
                                   "[width] [height] [prompt_words] [model_name] [date] [datetime] [index] [input] "
                                   "(default with a folder of inputs: [input]-[seed]).",
                                   rich_help_panel=OUT)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON record per image on stdout.", rich_help_panel=OUT)]
ImageFormat = Annotated[str, typer.Option("--format", help="Image file format: png, jpeg or webp (the WebUI infotext "
                                          "goes in the PNG chunk or the EXIF UserComment).", rich_help_panel=OUT)]
Quality = Annotated[int, typer.Option("--quality", help="JPEG/WebP quality, 1-100.", rich_help_panel=OUT)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, notes or summary on stderr (errors and "
                                     "warnings still show).", rich_help_panel=OUT)]


# -- Models folder and add-ons (LoRA, embeddings, VAE) and the loading policy -------------
ASSETS = "Models folder and add-ons"

ModelsDir = Annotated[str | None, typer.Option(
    "--models-dir", envvar="SDCLI_MODELS_DIR", show_default=False, metavar="DIR", rich_help_panel=ASSETS,
    help="Models folder laid out like the WebUI's models/: Stable-diffusion/, Lora/, VAE/, embeddings/, ESRGAN/. "
    "--model, --lora, --vae and <lora:NAME:W> tags find names there.")]
WebuiDir = Annotated[str | None, typer.Option(
    "--webui-dir", show_default=False, metavar="DIR", rich_help_panel=ASSETS,
    help="An AUTOMATIC1111 WebUI install: its models/ folders and embeddings/ are used as with --models-dir.")]
ComfyDir = Annotated[str | None, typer.Option(
    "--comfy-dir", show_default=False, metavar="DIR", rich_help_panel=ASSETS,
    help="A ComfyUI install: models/checkpoints, diffusion_models (or unet), text_encoders (or clip), vae, loras, "
    "embeddings, controlnet, upscale_models are searched as with --models-dir.")]
TextEncoder = Annotated[list[str] | None, typer.Option(
    "--text-encoder", show_default=False, metavar="FILE|NAME", rich_help_panel=ASSETS,
    help="A text encoder of a Flux transformer-only --model: CLIP-L and T5-XXL (.safetensors; repeatable, in any "
    "order: told apart by their tensors), a file or a name in the text_encoder folder. Written as Forge's "
    "`Module N` with the VAE.")]
Lora = Annotated[list[str] | None, typer.Option(
    "--lora", show_default=False, metavar="PATH[:WEIGHT]", rich_help_panel=ASSETS,
    help="LoRA file or name in the LoRA folder, with an optional weight: PATH[:WEIGHT] (default 1); repeatable. "
    "Prompts may also say <lora:NAME:WEIGHT>.")]
Embedding = Annotated[list[str] | None, typer.Option(
    "--embedding", show_default=False, metavar="PATH", rich_help_panel=ASSETS,
    help="Textual-inversion embedding file (repeatable); used where its file name (stem) is a word of the prompt, "
    "as are those in the embeddings folder.")]
LowBits = Annotated[str | None, typer.Option(
    "--low-bits", show_default=False, rich_help_panel=ASSETS,
    help="How the diffusion model's weights are stored, Forge's 'Diffusion in Low Bits': "
    f"{', '.join(LOW_BITS)} [default: the file's own]")]
Quantize = Annotated[str | None, typer.Option("--quantize", show_default=False, rich_help_panel=ASSETS, help=(
    f"Quantize the diffusion model as it loads, on CUDA: {', '.join(QUANTIZE)} (bitsandbytes; fp8: torchao, compute "
    "capability 8.9+); written as `Diffusion in Low Bits`. Not with --low-bits [default: as stored]"))]
QuantizeTextEncoder = Annotated[bool, typer.Option("--quantize-text-encoder", rich_help_panel=ASSETS, help=(
    "Quantize the big text encoder (T5-XXL, Qwen2.5-VL, Qwen3) as --quantize does the diffusion model."))]
Vae = Annotated[str | None, typer.Option(
    "--vae", show_default=False, metavar="PATH", rich_help_panel=ASSETS,
    help="VAE: a diffusers VAE folder, a .safetensors file (WebUI or diffusers layout; Flux: the 16-channel "
    "ae.safetensors) or a name in the VAE folder.")]
AllowPickle = Annotated[bool, typer.Option(
    "--allow-pickle", rich_help_panel=ASSETS,
    help="Allow .ckpt/.pt/.bin/.pth files, read only with torch's weights-only loader (torch >= 2.6). "
    "Off: pickle files are refused, as they can run code.")]
NoHalfVae = Annotated[bool, typer.Option(
    "--no-half-vae", rich_help_panel=ASSETS,
    help="Run the VAE in fp32 (a fp16 decode that gives NaNs is redone in fp32 anyway, with a warning).")]


def _assets(
    models_dir: ModelsDir = None,
    webui_dir: WebuiDir = None,
    comfy_dir: ComfyDir = None,
    lora: Lora = None,
    embedding: Embedding = None,
    vae: Vae = None,
    allow_pickle: AllowPickle = False,
    no_half_vae: NoHalfVae = False,
) -> None:
    """Template only: the models-folder and add-on flags (see shared_options)."""


ASSET_FLAGS = tuple(inspect.signature(_assets).parameters)


# steps, cfg_scale, sampler and schedule have none here: not given, they are the model family's (job.plan).
DEFAULTS = {"output": Path("outputs")}


def _shared(
    prompt: Prompt = None,
    prompt_opt: PromptOpt = None,
    negative_prompt: Negative = "",
    steps: Steps = None,
    cfg_scale: Cfg = None,
    distilled_cfg_scale: DistilledCfg = None,
    shift: Shift = None,
    model_sampling: ModelSampling = None,
    zero_negative: ZeroNegative = False,
    comfy_edit: ComfyEdit = False,
    reference_scale: ReferenceScale = None,
    upsample_prompt: UpsamplePrompt = None,
    cfg_norm: CfgNorm = None,
    seed: Seed = None,
    subseed: Subseed = None,
    subseed_strength: SubseedStrength = 0.0,
    width: Width = None,
    height: Height = None,
    batch_size: BatchSize = 1,
    count: Count = 1,
    sampler: Sampler = None,
    schedule: Schedule = None,
    clip_skip: ClipSkip = 1,
    tiling: Tiling = False,
    restore_faces: RestoreFaces = None,
    code_former_weight: CodeFormerWeight = 0.5,
    rng: Rng = "cpu",
    emphasis: Emphasis = "original",
    eta: Eta = None,
    ensd: Ensd = 0,
    s_churn: SChurn = 0.0,
    s_tmin: STmin = 0.0,
    s_tmax: STmax = 0.0,
    s_noise: SNoise = 1.0,
    sigma_min: SigmaMin = 0.0,
    sigma_max: SigmaMax = 0.0,
    model: Model = None,
    prediction_type: PredictionType = None,
    text_encoders: TextEncoder = None,
    low_bits: LowBits = None,
    quantize: Quantize = None,
    quantize_text_encoder: QuantizeTextEncoder = False,
    refiner: Refiner = None,
    refiner_switch: RefinerSwitch = 0.8,
    offline: Offline = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    attention_slicing: Slicing = "auto",
    xformers: Xformers = False,
    vae_tiling: VaeTiling = "auto",
    cpu_offload: CpuOffload = "auto",
    compile: Compile = False,
    channels_last: ChannelsLast = False,
    tf32: Tf32 = False,
    fuse_qkv: FuseQkv = False,
    server: Server = None,
    output: Output = DEFAULTS["output"],
    name: Name = "[num]-[seed]",
    image_format: ImageFormat = "png",
    quality: Quality = 90,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Template only: the flags every generating command takes (see shared_options)."""


def shared_options(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command `def cmd(own flags..., **flags)` the shared generation and add-on flags too.

    Typer reads a command's signature; this appends _shared's and _assets's
    parameters (less `exclude`) to it, so every command spells and documents them identically.
    """
    return lambda func: _append(func, (_shared, _assets), exclude)


def asset_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command `def cmd(own flags..., **flags)` the models-folder and add-on flags."""
    return _append(func, (_assets,), ())


def _append(func: Callable[..., Any], templates: tuple[Callable[..., Any], ...],
            exclude: tuple[str, ...]) -> Callable[..., Any]:
    own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [p for template in templates
              for p in inspect.signature(template, eval_str=True).parameters.values() if p.name not in exclude]
    params = own + shared
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in params}
    return func

# -- Image-to-image flags (img2img, inpaint, outpaint) -----------------------------------
IMG = "Input image"
MASK = "Mask"

Image = Annotated[Path, typer.Option("--image", "-i", help="Input image (PNG, JPEG or WebP), or a folder or quoted "
                                     "glob of them: one item each, seed + i, in name order.",
                                     rich_help_panel=IMG, show_default=False)]
Strength = Annotated[float, typer.Option(
    "--strength", help="Denoising strength, more than 0 and at most 1; steps run = int(steps x strength) + 1, "
    "as in the WebUI (with --rng comfy: --steps of int(steps / strength), as ComfyUI's KSampler).",
    rich_help_panel=IMG)]
Resize = Annotated[str, typer.Option(
    "--resize", help="When --width/--height differ from the input: just (stretch), crop (crop and resize) "
    "or fill (resize and fill with stretched edges).", rich_help_panel=IMG)]
Mask = Annotated[Path, typer.Option("--mask", help="Mask image: white = repaint, black = keep (same size as "
                                    "--image); with a folder/glob of inputs also a folder/glob of masks, paired "
                                    "by file name.", rich_help_panel=MASK, show_default=False)]
InvertMask = Annotated[bool, typer.Option("--invert-mask", help="Repaint the black part instead.",
                                          rich_help_panel=MASK)]
ResizeMask = Annotated[bool, typer.Option("--resize-mask", help="Resize a mask of another size to the image's.",
                                          rich_help_panel=MASK)]
MaskBlur = Annotated[int, typer.Option("--mask-blur",
                                       help=f"Blur of the mask edge in pixels ({r('inpaint.mask_blur')}).",
                                       rich_help_panel=MASK)]
InpaintArea = Annotated[str, typer.Option(
    "--inpaint-area", help="whole: the whole picture at the generation size; masked: a crop around the mask "
    "(grown by --padding) generated at the full generation size, then pasted back.", rich_help_panel=MASK)]
Padding = Annotated[int, typer.Option("--padding", help=f"Pixels added around the mask for --inpaint-area "
                                      f"masked ({r('inpaint.padding')}).",
                                      rich_help_panel=MASK)]
MaskedContent = Annotated[str, typer.Option(
    "--masked-content", rich_help_panel=MASK,
    help="What the masked area starts from; all four work with ordinary and 9-channel inpainting checkpoints. "
    "original: the input pixels (the diffusers pipelines' own behaviour). fill: the input with the masked "
    "pixels replaced by colours blurred in from around them. latent-noise / latent-nothing: the image latents "
    "under the mask replaced by the seed's noise / zeros before denoising, as in the WebUI.")]
Left, Right, Up, Down = (Annotated[int, typer.Option(f"--{side}", help=f"Pixels to add {where} "
                                                     f"({r('outpaint.' + side)}).", rich_help_panel=IMG)]
                         for side, where in (("left", "on the left"), ("right", "on the right"),
                                             ("up", "at the top"), ("down", "at the bottom")))
Expand = Annotated[int, typer.Option("--expand", help="Pixels to add on each --direction side.",
                                     rich_help_panel=IMG)]
Direction = Annotated[list[str] | None, typer.Option(
    "--direction", help="Sides for --expand: left, right, up, down; repeat or comma-separate "
    "[default: all four]", rich_help_panel=IMG, show_default=False)]
Fill = Annotated[str, typer.Option("--fill", help="Pre-fill of the new area: edge (stretched border pixels), "
                                   "noise, or blur (colours blurred in from the border).", rich_help_panel=IMG)]

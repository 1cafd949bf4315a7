"""Qwen-Image from single files: a transformer-only file with the Qwen2.5-VL text encoder and VAE files beside it.

Transformer layouts: Qwen-Image's own files use diffusers' names, bare (Qwen's shards, city96's GGUFs) or under
ComfyUI's "model.diffusion_model." (qwen_image_fp8_e4m3fn.safetensors); diffusers' single-file support for
QwenImageTransformer2DModel maps them unchanged, so sdcli only strips the prefix (models.flow_load). The text
encoder is Qwen2.5-VL 7B (ComfyUI's qwen_2.5_vl_7b.safetensors: the Hugging Face checkpoint's names, "model.*"
for the language model and "visual.*" for the vision tower; transformers 5 keeps them under "model.language_model."
and "model.visual.", which are read too), or a llama.cpp GGUF of its language model (qwen2vl) for the modes that
run no vision tower (txt2img, img2img, inpaint; not Qwen-Image-Edit). The VAE is ComfyUI's
qwen_image_vae.safetensors (Wan 2.1's original names; diffusers' Wan converter fixes the released block counts, so
models.wan_vae_keys renames them at any size) or an AutoencoderKLQwenImage file in diffusers' names; diffusers has
no single-file loader for that class, so sdcli checks the keys strictly and loads the state dict into the model its
config builds. Configs: configs/qwen-image.json for the released width (transformer and VAE: diffusers' class
defaults, which are Qwen-Image's; text encoder: Qwen2.5-VL-7B's published config; scheduler: Qwen-Image's), else
the tiny architecture (models.tiny_qwenimage). The Qwen2.5-VL tokenizer is bundled (models.flow_load.file_tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families.base import Detected
from sdcli.models.resolve import ModelRef

MARK = "txt_norm.weight"
FULL_WIDTH = 3072  # 24 heads of 128
LANGUAGE, VISUAL = "model.language_model.", "model.visual."  # transformers 5's names
GGUF_KEEP = ("img_in.", "txt_in.", "time_text_embed.", "norm_out.", "proj_out.")


def to_transformers(state: dict[str, Any]) -> dict[str, Any]:
    """A Qwen2.5-VL state dict (the Hugging Face checkpoint's names, or transformers 5's) in transformers 5's."""
    out = {}
    for key, value in state.items():
        if key.startswith((LANGUAGE, VISUAL)) or key == "lm_head.weight":
            out[key] = value
        elif key.startswith("visual."):
            out["model." + key] = value
        elif key.startswith("model."):
            out[LANGUAGE + key.removeprefix("model.")] = value
        else:
            out[key] = value  # refused by the strict key check, by name
    return out


def to_checkpoint_names(state: dict[str, Any]) -> dict[str, Any]:
    """transformers 5's Qwen2.5-VL names -> the Hugging Face checkpoint's (ComfyUI's file); to_transformers' inverse."""
    out = {}
    for key, value in state.items():
        if key.startswith(VISUAL):
            key = "visual." + key.removeprefix(VISUAL)
        elif key.startswith(LANGUAGE):
            key = "model." + key.removeprefix(LANGUAGE)
        out[key] = value
    return out


def load_qwen25vl(path: Path, dtype: Any, config: dict[str, Any], source: str = "--text-encoder",
                  vision: str | None = None) -> Any:
    """A transformers Qwen2_5_VLForConditionalGeneration from a Qwen2.5-VL file (either naming), or from a llama.cpp
    GGUF of its language model with no vision tower (a text prompt never runs it); `vision`: the label of a family
    that needs the tower (Qwen-Image-Edit reads its images with it), for which a GGUF is refused."""
    import transformers

    from sdcli.models.flux_files import inspect_part
    from sdcli.models.flux_load import _load_transformers, read_tensors, upcast

    where = f"{source}: {path}"
    info = inspect_part(path, "qwen2.5-vl")
    if info.kind != "qwen2.5-vl":
        raise ModelError(f"{where} is not a Qwen2.5-VL text encoder")
    if info.container == "gguf":
        if vision is not None:
            raise ModelError(f"{where}: a Qwen2.5-VL GGUF holds its language model only, and {vision} reads its "
                             "images with the vision tower (llama.cpp's separate mmproj file, which sdcli does not "
                             "read); use the .safetensors file (qwen_2.5_vl_7b.safetensors)")
        return _load_language_model(path, dtype, config, source)
    state = to_transformers(read_tensors(path, info.prefix, source, dtype))
    if "lm_head.weight" not in state:  # unused for the image model's hidden states; some files leave it out
        state["lm_head.weight"] = state[LANGUAGE + "embed_tokens.weight"]
    return _load_transformers(transformers.Qwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLConfig,
                              upcast(state, dtype), config, dtype, where)


def _load_language_model(path: Path, dtype: Any, config: dict[str, Any], source: str) -> Any:
    """Qwen2_5_VLForConditionalGeneration with a llama.cpp GGUF's language model (models.gguf_text; its shape from
    the file's metadata) and no vision tower (None), strictly checked."""
    import transformers
    from accelerate import init_empty_weights

    from sdcli.models.flux_load import check_keys
    from sdcli.models.gguf_text import gguf_text_config, read_gguf_encoder
    from sdcli.models.quiet import quiet_libraries

    quiet_libraries()
    text = gguf_text_config(path, dict(config["text_config"]), "qwen2_5_vl_text", "Qwen2.5-VL", source)
    text_config = transformers.Qwen2_5_VLTextConfig(**text)
    state = {LANGUAGE + k: v for k, v in read_gguf_encoder(path, transformers.Qwen2_5_VLTextModel, text_config, dtype,
                                                           source).items()}
    state["lm_head.weight"] = state[LANGUAGE + "embed_tokens.weight"]  # unused for hidden states (output.* unread)
    with init_empty_weights(include_buffers=False):  # parameters on the meta device, the rotary tables computed
        model = transformers.Qwen2_5_VLForConditionalGeneration(
            transformers.Qwen2_5_VLConfig(**{**config, "text_config": text}))
    model.model.visual = None
    check_keys(state, model.state_dict(), f"{source}: {path}")
    model.load_state_dict(state, strict=True, assign=True)  # the weights in `dtype` already
    return model.eval()  # not .to(dtype): the rotary tables stay float32, as from_pretrained keeps them


def load_qwen_vae(path: Path, dtype: Any, config: dict[str, Any], source: str = "--vae") -> Any:
    """A diffusers AutoencoderKLQwenImage from its file in diffusers' or Wan 2.1's names (maybe under "vae.")."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLQwenImage

    from sdcli.models.flux_files import inspect_part
    from sdcli.models.flux_load import check_keys, read_tensors, upcast
    from sdcli.models.wan_vae_keys import wan_to_diffusers

    where = f"{source}: {path}"
    info = inspect_part(path, "qwen-vae")
    if info.kind != "qwen-vae":
        raise ModelError(f"{where} is not a Qwen-Image VAE (3-D convolutions, in diffusers' or Wan 2.1's names)")
    # diffusers has no single-file loader for this class: checked strictly, then loaded into the model it configures
    with init_empty_weights():
        expected = AutoencoderKLQwenImage.from_config(config).state_dict()
    state = read_tensors(path, info.prefix, source, dtype)
    if info.layout == "wan":
        state = wan_to_diffusers(state, expected)
    state = upcast(state, dtype)
    check_keys(state, expected, where)
    vae = AutoencoderKLQwenImage.from_config(config)
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype).eval()


def component_configs(width: int, source: str) -> tuple[dict[str, Any], bool]:
    """{part: config} for a transformer of this width, and whether it is the tiny architecture."""
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny_qwenimage import QWEN_SCHEDULER, QWEN_TEXT, QWEN_TRANSFORMER, QWEN_VAE, QWEN_VISION

    if width == FULL_WIDTH:
        return family_config("qwen-image"), False
    tiny: dict[str, Any] = dict(QWEN_TRANSFORMER)
    if width == int(tiny["num_attention_heads"]) * int(tiny["attention_head_dim"]):
        text = {"text_config": dict(QWEN_TEXT), "vision_config": dict(QWEN_VISION)}
        return {"transformer": tiny, "text_encoder": text, "vae": dict(QWEN_VAE),
                "scheduler": dict(QWEN_SCHEDULER)}, True
    raise ModelError(f"{source}: a Qwen-Image transformer {width} wide is not a variant sdcli knows (expected "
                     f"{FULL_WIDTH})")


def load_qwenimage_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    """The diffusers `pipeline` (QwenImagePipeline, ...) of a Qwen-Image transformer file and its parts (the plan
    step found them: ModelRef.parts "qwen25vl" and "vae")."""
    import diffusers

    from sdcli.models.flow_load import file_tokenizer, load_transformer, part_source, transformer_prefix
    from sdcli.models.flux_files import read_tensor_table

    prefix = transformer_prefix(model.path, MARK)
    width = int(read_tensor_table(model.path)[0][prefix + "img_in.weight"][0])
    spec, tiny = component_configs(width, f"--model: {model.path}")
    encoder, vae_file = part_source(model, "qwen25vl"), part_source(model, "vae")
    if tiny and detected.family.capabilities.references:  # sdcli's tiny edit models: the vision tokens too
        from sdcli.models.tiny_qwenimage import tiny_edit_tokenizer

        tokenizer = tiny_edit_tokenizer(spec["text_encoder"])
    else:
        tokenizer = file_tokenizer(spec["text_encoder"], tiny, (encoder[0], model.path), "Qwen2.5-VL")
    vision = detected.family.label if detected.family.capabilities.references else None
    # the text encoder first: a GGUF an edit model cannot take is refused before the 20B transformer loads
    text_encoder = load_qwen25vl(encoder[0], dtype, spec["text_encoder"], encoder[1], vision)
    transformer = load_transformer("QwenImageTransformer2DModel", model.path, dtype, spec["transformer"], prefix, True)
    vae = load_qwen_vae(vae_file[0], dtype, spec["vae"], vae_file[1])
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                        transformer=transformer)


TRANSFORMER_LAYOUTS = ("original", "comfy", "gguf")  # original: diffusers' names, as Qwen's own files


def write_qwenimage_files(pipe: Any, dest: Path, layout: str, qtype: str = "F16",
                          wan_vae: bool = True) -> dict[str, Path]:
    """A Qwen-Image pipeline's parts as people download them, in the folder `dest`: the transformer in `layout`
    (original, comfy; gguf of GGUF type `qtype`), qwen_2.5_vl_7b.safetensors (ComfyUI's names) and the VAE in
    Wan 2.1's names as ComfyUI's qwen_image_vae.safetensors (`wan_vae` False: diffusers' names); returns part ->
    file."""
    from sdcli.errors import UsageError
    from sdcli.models.flow_load import COMFY_PREFIX
    from sdcli.models.flux_keys import add_prefix
    from sdcli.models.flux_write import _save, write_gguf
    from sdcli.models.wan_vae_keys import diffusers_to_wan

    if layout not in TRANSFORMER_LAYOUTS:
        raise UsageError(f"Qwen-Image transformer layout {layout!r}: use one of {', '.join(TRANSFORMER_LAYOUTS)}")
    state = dict(pipe.transformer.state_dict())
    name = "qwen_image.gguf" if layout == "gguf" else f"qwen_image_{layout}.safetensors"
    if layout == "gguf":
        transformer = write_gguf(state, dest / name, qtype, arch="qwen_image", keep=GGUF_KEEP)
    else:
        transformer = _save(add_prefix(state, COMFY_PREFIX) if layout == "comfy" else state, dest / name)
    text = to_checkpoint_names(dict(pipe.text_encoder.state_dict()))
    vae = dict(pipe.vae.state_dict())
    return {"transformer": transformer, "qwen25vl": _save(text, dest / "qwen_2.5_vl_7b.safetensors"),
            "vae": _save(diffusers_to_wan(vae) if wan_vae else vae, dest / "qwen_image_vae.safetensors")}

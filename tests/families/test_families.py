"""The families table: detection from tensor names/shapes and folders, bundled full-size configs."""

import pytest

from sdcli import families
from sdcli.errors import ModelError
from sdcli.families import base, detect_single_file
from sdcli.families.sd1 import SD1_CLIP
from sdcli.families.sd2 import SD2_OPENCLIP
from sdcli.families.sdxl import REFINER_CLIP_G, SDXL_CLIP_G, SDXL_CLIP_L

CONV_IN = base.UNET_CONV_IN


def _shapes(text_key: str, in_channels: int = 4, **extra) -> dict:
    return {text_key: [49408, 768], CONV_IN: [320, in_channels, 3, 3], **extra}


@pytest.mark.parametrize(("text_key", "family", "channels", "prediction", "guessed", "size"), [
    (SD1_CLIP, "sd1", 4, "eps", False, 512),
    (SD1_CLIP, "sd1", 9, "eps", False, 512),
    (SD2_OPENCLIP, "sd2", 4, "v", True, 768),  # 768-v guessed
    (SD2_OPENCLIP, "sd2", 9, "eps", True, 512),  # 512-inpainting guessed eps
    (REFINER_CLIP_G, "sdxl-refiner", 4, "eps", False, 1024),
])
def test_single_file_detection_from_names_and_shapes(text_key, family, channels, prediction, guessed, size):
    detected = detect_single_file(_shapes(text_key, channels))
    assert (detected.family.name, detected.in_channels, detected.prediction, detected.prediction_guessed,
            detected.native_size, detected.inpainting) == (family, channels, prediction, guessed, size, channels == 9)


def test_sdxl_needs_both_encoders_and_v_pred_marker_wins():
    both = _shapes(SDXL_CLIP_L, **{SDXL_CLIP_G: [49408, 1280]})
    assert detect_single_file(both).family.name == "sdxl"
    assert detect_single_file({**both, "v_pred": []}).prediction == "v"
    with pytest.raises(ModelError, match="not a checkpoint of a model family sdcli knows"):
        detect_single_file(_shapes(SDXL_CLIP_L))  # CLIP-L alone is no known family


def test_unknown_and_unet_less_files_are_refused_by_name():
    with pytest.raises(ModelError, match=r"^x\.safetensors: not a checkpoint of a model family"):
        detect_single_file({"lora_unet_down.weight": [4, 4]}, "x.safetensors")
    with pytest.raises(ModelError, match="no UNet"):
        detect_single_file({SD1_CLIP: [49408, 768]})


def test_pipelines_per_mode_come_from_the_table():
    sdxl, refiner = families.FAMILIES["sdxl"], families.FAMILIES["sdxl-refiner"]
    assert sdxl.pipelines["inpaint"] == "StableDiffusionXLInpaintPipeline"
    assert families.FAMILIES["sd2"].pipelines["img2img"] == "StableDiffusionImg2ImgPipeline"
    detected = families.Detected(refiner, 4, "eps", False)
    with pytest.raises(ModelError, match="cannot run txt2img; use it as --refiner"):
        families.pipeline_class(detected, "txt2img")


def test_folder_detection(tiny_model, tiny_xl, tmp_path):
    from sdcli.models.tiny import build_tiny

    assert families.detect_folder(tiny_model).family.name == "sd1"
    assert families.detect_folder(tiny_xl["base"]).family.name == "sdxl"
    assert families.detect_folder(tiny_xl["refiner"]).family.name == "sdxl-refiner"
    sd2 = families.detect_folder(build_tiny(tmp_path / "sd2i", arch="sd2-inpaint"))
    assert (sd2.family.name, sd2.in_channels, sd2.prediction) == ("sd2", 9, "v")


# Parameter counts of the published models (UNet, VAE, text encoder(s)).
PUBLISHED = {
    "sd1": [859_520_964, 83_653_863, 123_060_480],
    "sd2": [865_910_724, 83_653_863, 340_387_840],
    "sdxl": [2_567_463_684, 83_653_863, 123_060_480, 694_659_840],
}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl-refiner"])
def test_bundled_configs_build_the_full_size_models_and_invert_diffusers_conversion(family):
    """The bundled configs give the published architectures (built on the meta device: no memory),
    and the original key layout sdcli writes converts back to exactly the diffusers keys."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdcli.models.bundled import family_config
    from sdcli.models.original_keys import original_state_dict

    config = family_config(family)
    with torch.device("meta"):
        parts = {"unet": UNet2DConditionModel.from_config(config["unet"]),
                 "vae": AutoencoderKL.from_config(config["vae"])}
        for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            if name in config:
                te = {k: v for k, v in config[name].items() if k not in ("architectures", "model_type")}
                parts[name] = cls(CLIPTextConfig(**te))
    counts = [sum(p.numel() for p in m.parameters()) for m in parts.values()]
    if family in PUBLISHED:
        assert counts == PUBLISHED[family]
    pipe = type("Pipe", (), parts)
    original = original_state_dict(pipe, family)
    unet = {k: v for k, v in original.items() if k.startswith(base.UNET_PREFIX)}
    vae = {k: v for k, v in original.items() if k.startswith(base.VAE_PREFIX)}
    assert set(convert_ldm_unet_checkpoint(unet, dict(parts["unet"].config))) == set(parts["unet"].state_dict())
    assert set(convert_ldm_vae_checkpoint(vae, dict(parts["vae"].config))) == set(parts["vae"].state_dict())
    assert detect_single_file({k: list(v.shape) for k, v in original.items()}).family.name == family


def test_bundled_clip_tokenizer_is_the_real_one(tmp_path):
    from transformers import CLIPTokenizer

    from sdcli.models.bundled import write_clip_tokenizer

    write_clip_tokenizer(tmp_path)
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_every_family_is_detected_and_refiners_pair_by_their_group():
    assert sorted(f.name for f in families.DETECTION) == sorted(families.FAMILIES)
    sd1, sdxl, refiner = (families.FAMILIES[n] for n in ("sd1", "sdxl", "sdxl-refiner"))
    families.check_refiner_pair(sdxl, refiner)
    families.check_refiner_pair(sdxl, sdxl)  # the WebUI takes a base model as refiner too
    with pytest.raises(ModelError, match="must be SDXL models .*; got Stable Diffusion 1.x and"):
        families.check_refiner_pair(sd1, refiner)
    assert (sd1.capabilities.controlnet, sdxl.capabilities.controlnet) == ("sd", "sdxl")


def test_latent_format_shapes_and_scaling():
    from types import SimpleNamespace

    from sdcli.families.latent import LatentFormat

    sd = families.FAMILIES["sd1"].latent
    assert sd.noise_shape(64, 48) == (4, 6, 8)
    vae = SimpleNamespace(scaling_factor=0.13025, shift_factor=None)
    assert (sd.scaling_of(vae), sd.shift_of(vae)) == (0.13025, 0.0)  # SD: the VAE config's, no shift
    flux_like = LatentFormat(channels=16, scaling=0.3611, shift=0.1159, packing=2)
    assert flux_like.noise_shape(64, 48) == (16, 6, 8) and flux_like.shift_of(vae) == 0.1159


def test_the_network_adapter_is_the_loops_one_call(tiny_pipe):
    import torch

    from sdcli.conditioning.cond import Conditioning

    network = tiny_pipe.network
    assert (network.in_channels, network.dtype, network.device.type) == (4, torch.float32, "cpu")
    x, t, cond = torch.zeros(1, 4, 8, 8), torch.tensor([500.0]), Conditioning(torch.zeros(1, 77, 32))
    plain = network(x, t, cond)
    seen = []
    controlled = network(x, t, cond, lambda *args: seen.append(args) or {})  # residuals come as kwargs
    assert plain.shape == (1, 4, 8, 8) and torch.equal(plain, controlled) and len(seen) == 1

"""The memory table of every family (README "Memory plans by family") is what sdcli's planner decides from the
parameter table (models.sizes), and the parameter table is what diffusers' and transformers' classes hold with the
released configs (counted on the meta device); the README's defaults-by-family table is the family table's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdcli.families import FAMILIES
from sdcli.models import sizes
from sdcli.models.runtime import GIB

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
CONFIGS = Path(sizes.__file__).with_name("configs")


def _section(title: str) -> str:
    return README.split(title, 1)[1].split("\n#", 1)[0]


def test_readme_memory_table_is_the_planners():
    rows = [line for line in _section("#### Memory plans by family").splitlines() if line.startswith("| ")][1:]
    assert rows == sizes.table_rows()
    assert len(rows) == len(sizes.PUBLISHED) * len(sizes.STORAGES)


def test_the_plans_follow_the_rule():
    zimage = next(m for m in sizes.PUBLISHED if m.label == "Z-Image Turbo")
    assert sizes.part_bytes(zimage, "nf4", "nf4")["transformer"] == int(zimage.transformer * 4.5 / 8)
    # Z-Image Turbo: bf16 (11.5 + 7.5 GiB) is resident on 24 GB; on 12 GB only nf4 with the encoder in nf4 stays
    assert [sizes.offload_plan(zimage, s, e, 24) for s, e in sizes.STORAGES] == ["none"] * 5
    assert [sizes.offload_plan(zimage, s, e, 12) for s, e in sizes.STORAGES] == [
        "sequential", "model", "model", "model", "none"]
    # fewer bits never make a plan worse
    order = {"none": 0, "model": 1, "sequential": 2}
    for model in sizes.PUBLISHED:
        for card in sizes.CARDS:
            plans = [order[sizes.offload_plan(model, s, e, card)] for s, e in sizes.STORAGES]
            assert plans == sorted(plans, reverse=True), (model.label, card, plans)


def test_the_table_names_families_that_take_quantization():
    for model in sizes.PUBLISHED:
        family = FAMILIES[model.family]
        assert family.capabilities.low_bits and family.big_text_encoders, model.label
        assert (1024 // family.token_pixels()) ** 2 + 512 == sizes.TOKENS  # the planner's tokens at 1024 px


def test_a_loaded_models_working_memory_counts_its_tokens_and_width(tiny_family_pipe):
    from sdcli.models.placement import working_bytes
    from sdcli.models.runtime import JobSize, RuntimeOptions, network_working_bytes, plan_runtime

    plan = plan_runtime(RuntimeOptions(device="cuda"), cuda=True, mps=False, xformers=False, gpu_dtype="bf16",
                        job=JobSize(1024, 1024, 1))
    zimage = tiny_family_pipe("zimage")  # 2x2 patches made inside the network; its config's width is `dim` (32)
    assert working_bytes(zimage, plan) == network_working_bytes(sizes.TOKENS, 32, 1, 2)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _config(name: str, part: str) -> dict:
    return {k: v for k, v in json.loads((CONFIGS / f"{name}.json").read_text())[part].items() if not k.startswith("_")}


@pytest.mark.slow
def test_parameter_counts_are_the_released_configs():
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    qwen3 = dict(intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                 head_dim=128, vocab_size=151936)
    with init_empty_weights():
        counted = {
            "Z-Image Turbo": _count(diffusers.ZImageTransformer2DModel()),
            "Qwen-Image": _count(diffusers.QwenImageTransformer2DModel()),
            "Chroma": _count(diffusers.ChromaTransformer2DModel()),
            "SD3.5 large": _count(diffusers.SD3Transformer2DModel(**_config("sd3", "transformer"))),
            "Flux.2 klein 4B": _count(diffusers.Flux2Transformer2DModel(
                num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680,
                guidance_embeds=False)),
            "Flux.2 klein 9B": _count(diffusers.Flux2Transformer2DModel(
                num_layers=8, num_single_layers=24, num_attention_heads=32, joint_attention_dim=12288,
                guidance_embeds=False)),
            "Flux.2 dev": _count(diffusers.Flux2Transformer2DModel(**_config("flux2-dev", "transformer"))),
        }
        mistral = _count(transformers.MistralModel(transformers.MistralConfig(**_config("flux2-dev", "text_encoder"))))
        qwen3_4b = _count(transformers.Qwen3Model(transformers.Qwen3Config(hidden_size=2560, **qwen3)))
        qwen3_8b = _count(transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            hidden_size=4096, **{**qwen3, "intermediate_size": 12288}, tie_word_embeddings=False)))
        t5 = transformers.T5EncoderModel(transformers.T5Config(**_config("sd3", "text_encoder_3")))
        vae = _count(diffusers.AutoencoderKL(**_config("sd3", "vae")))
        clip_g = _count(transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            **_config("sd3", "text_encoder_2"))))
    for model in sizes.PUBLISHED:
        if model.label in counted:
            assert model.transformer == counted[model.label], model.label
    assert (qwen3_4b, qwen3_8b, vae, clip_g) == (sizes.QWEN3_4B, sizes.QWEN3_8B, sizes.FLUX_VAE, sizes.CLIP_G)
    assert mistral == sizes.MISTRAL_SMALL_3
    # T5's embedding is shared by its encoder (counted once: the meta build does not tie it)
    assert _count(t5) - t5.shared.weight.numel() == sizes.T5_XXL
    assert sizes.table_rows()[0].startswith(f"| Flux.1 dev | bf16 | {11_901_408_320 * 2 / GIB:.1f} |")


def test_readme_defaults_table_is_the_family_table():
    from sdcli.request.generation import REQUEST_DEFAULTS
    from sdcli.sampling.samplers import ALL_SCHEDULE_LABELS, MODEL_SCHEDULE_LABELS

    rows = re.findall(r"^\| (.+?) \| (\d+) \| ([\d.]+) \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$",
                      _section("#### Defaults by family"), re.M)
    labels = {"SD 1.x, SD 2.x, SDXL": "sdxl", "Flux.1 dev, Fill, Control": "flux-dev", "Flux.1 schnell": "flux-schnell",
              "SD3 / SD3.5": "sd3", "Chroma": "chroma", "Qwen-Image": "qwen-image", "Flux.2 klein (distilled)":
              "flux2-klein", "Flux.2 klein base": "flux2-klein-base", "Flux.2 dev": "flux2-dev"}
    assert len(rows) == 10
    for label, steps, cfg, sampler, schedule, shift, distilled in rows:
        family = FAMILIES[labels.get(label, "zimage")]
        values = {**REQUEST_DEFAULTS, **family.defaults}
        schedule_label = ALL_SCHEDULE_LABELS.get(values["schedule"], "Automatic")
        assert (int(steps), float(cfg), sampler, schedule) == (
            values["steps"], values["cfg_scale"], values["sampler"], schedule_label), label
        flow = getattr(family, "table", None)
        table = "-" if flow is None else f"mu {family.shift:g}" if flow == "flux" else f"{family.shift:g}"
        # a sized schedule's mu comes from the image (the table's shift for the other schedule types)
        assert shift == (f"from size (else {table})" if values["schedule"] in MODEL_SCHEDULE_LABELS else table), label
        guided = family.capabilities.distilled_guidance
        assert distilled == (f"{values['distilled_cfg_scale']:g}" if guided else "-"), label

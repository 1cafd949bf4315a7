"""The flow families' test facts, one row each: the tiny model, its fixture, the defaults its infotext records,
the refusals by flag, its single-file refusal and its reference (module:entry point). Read by tests/conftest.py
(fixtures), tests/cli/test_flow_families_cli.py and tests/reference/flow_parity.py. No heavy imports here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FlowFamily:
    """One flow family's test facts (CLI runs: 2 steps, 32 px, seed 3)."""

    key: str
    arch: str  # sdcli.models.tiny.build_tiny's arch
    folder: str  # the tiny model's folder name
    fixture: str  # the session fixture naming the folder (tests/conftest.py)
    pipe_fixture: str | None = None  # the session fixture naming it loaded on CPU
    reference: str = ""  # "module:entry" under tests.reference
    cfg: str = "1"  # the CFG scale the infotext records by default
    schedule: str = "Simple"  # the schedule type the infotext records by default
    shift: str | None = None  # a --shift other than the model's (None: no shift test)
    xyz_shifts: str | None = None  # a Shift axis for X/Y/Z (None: no prompt-file/X/Y/Z/replay test)
    hires: tuple[str, ...] = ("--hires-steps", "2", "--hires-upscaler", "Lanczos")
    refusals: tuple[tuple[tuple[str, ...], str], ...] = ()  # (arguments with the prompt, stderr text): exit 2
    single_file: tuple[str, dict[str, tuple[int, ...]], str] | None = None  # (name, key: shape, message): exit 1/2
    parity: dict[str, object] = field(default_factory=dict)  # the job settings both sides default to


def _refusals(name: str, plural: str, uniform: str, emphasis: tuple[str, str],
              clip_skip: str = "has no CLIP skip", distilled: str | None = None) -> tuple:
    """The six refusals every flow family gives, in its own words."""
    return (
        (("--sampler", "DDIM", "a cat"), f"--sampler: DDIM walks a discrete DDPM schedule; {plural} take"),
        (("--clip-skip", "2", "a cat"), f"--clip-skip: a {name} model {clip_skip}"),
        (("--prediction-type", "v", "a cat"), f"--prediction-type: a {name} model is a flow model"),
        (("--distilled-cfg", "3", "a cat"), distilled or f"--distilled-cfg: {plural} have no distilled guidance"),
        (("--schedule", "uniform", "a cat"), f"--schedule: Uniform reads {uniform} as sigmas on a {name} model"),
        ((emphasis[0],), emphasis[1]),
    )


FLOW_FAMILIES: dict[str, FlowFamily] = {f.key: f for f in (
    FlowFamily(
        "flux2", "flux2-klein", "flux2-klein", "tiny_flux2", "tiny_flux2_pipe", reference="flux2_ref:sample", cfg="1",
        schedule="Flux2", shift="1", xyz_shifts="2.02, 1",
        refusals=_refusals("Flux.2 klein", "Flux.2 klein models", "timesteps 9999..0",
                           ("a (cat:1.4)", "prompt: Flux.2 takes no emphasis weights")),
        single_file=("flux-2-klein-4b.safetensors",
                     {"model.diffusion_model.single_stream_modulation.lin.weight": (4, 4),
                      "model.diffusion_model.img_in.weight": (4, 128)},
                     "--text-encoder: flux-2-klein-4b.safetensors holds only the transformer; give the Qwen3 "
                     "encoder")),
    FlowFamily(
        "flux2-dev", "flux2-dev", "flux2-dev", "tiny_flux2_dev", "tiny_flux2_dev_pipe", reference="flux2_ref:sample",
        cfg="1", schedule="Flux2", shift="1", xyz_shifts="2.02, 1", parity={"schedule": "Flux2"},
        refusals=tuple(r for r in _refusals("Flux.2 dev", "Flux.2 dev models", "timesteps 9999..0",
                                            ("a (cat:1.4)", "prompt: Flux.2 takes no emphasis weights"),
                                            clip_skip="has no CLIP skip (its text is Mistral Small 3's")
                       if r[0][0] != "--distilled-cfg"),  # dev takes distilled guidance
        single_file=("flux2_dev_fp8mixed.safetensors",
                     {"model.diffusion_model.single_stream_modulation.lin.weight": (4, 4),
                      "model.diffusion_model.guidance_in.in_layer.weight": (4, 4),
                      "model.diffusion_model.img_in.weight": (4, 128)},
                     "--text-encoder: flux2_dev_fp8mixed.safetensors holds only the transformer; give the Mistral "
                     "Small 3 encoder")),
    FlowFamily(
        "zimage", "zimage", "zimage", "tiny_zimage", "tiny_zimage_pipe", reference="zimage_ref:sample", cfg="1",
        shift="6", xyz_shifts="3, 6",
        refusals=_refusals("Z-Image", "Z-Image models", "discrete timesteps",
                           ("a (cat:1.4)", "prompt: Z-Image takes no emphasis weights")),
        single_file=("z_image_turbo.safetensors",
                     {"model.diffusion_model.layers.0.adaLN_modulation.0.weight": (4, 4),
                      "model.diffusion_model.cap_embedder.1.weight": (4, 4),
                      "model.diffusion_model.x_embedder.weight": (4, 64)},
                     "--text-encoder: z_image_turbo.safetensors holds only the transformer; give the Qwen3 encoder")),
    FlowFamily(
        "qwenimage", "qwen-image", "qwen-image", "tiny_qwenimage", "tiny_qwenimage_pipe",
        reference="qwenimage_ref:sample", cfg="2.5", shift="3.1", xyz_shifts="1.15, 3.1",
        refusals=_refusals("Qwen-Image", "Qwen-Image models", "timesteps 9999..0",
                           ("a (cat:1.4)", "prompt: Qwen-Image takes no emphasis weights")),
        single_file=("qwen_image_bf16.safetensors",
                     {"model.diffusion_model.img_in.weight": (4, 64), "model.diffusion_model.txt_norm.weight": (4,),
                      "model.diffusion_model.transformer_blocks.0.img_mod.1.weight": (4, 4)},
                     "--text-encoder: qwen_image_bf16.safetensors holds only the transformer; give the Qwen2.5-VL "
                     "encoder")),
    FlowFamily(
        "chroma", "chroma", "chroma", "tiny_chroma", "tiny_chroma_pipe", reference="chroma_ref:sample_chroma", cfg="4",
        hires=("--hires-scale", "2"), parity={"cfg": 4.0, "negative": "blurry"},
        refusals=_refusals("Chroma", "Chroma models", "timesteps 9999..0",
                           ("(a cat:1.3)", "--prompt: a Chroma model takes no emphasis weights"),
                           clip_skip="has no CLIP text encoder", distilled="Chroma")),
    FlowFamily("sd3", "sd3", "sd3", "tiny_sd3", "tiny_sd3_pipe", reference="sd3_ref:sample_sd3", cfg="4.5"),
)}

# Flux.1's tiny variants (the `tiny_flux` fixture's dict) and its Forge reference.
FLUX1_ARCHS = ("flux-dev", "flux-schnell", "flux-dev-inpaint")
FLUX1_REFERENCE = "forge_flux_ref:sample_flux"

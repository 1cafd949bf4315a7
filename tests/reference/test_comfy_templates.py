"""Graphs shaped as ComfyUI's official templates for Z-Image Turbo, Qwen-Image, Flux.2 klein/dev and Chroma (their
node types, links and widget values as the API `prompt` chunk holds them; 32 px, 3 steps), replayed by sdcli on the
tiny models against the independent transcriptions of ComfyUI (zimage_ref, qwenimage_ref, flux2_ref, chroma_ref,
comfy_ref's model samplings): ModelSamplingAuraFlow (comfy_extras/nodes_model_advanced.py: ModelSamplingDiscreteFlow
with the node's shift and multiplier 1, whatever the model's own), ConditioningZeroOut (nodes.py: the conditioning's
tensors as zeros of their shapes, a pooled output too; unused at CFG 1, where ComfyUI runs no uncond pass) and
Flux.2 dev's guidance without FluxGuidance (comfy/model_base.py Flux.extra_conds: 3.5). Each mapping is shown to
matter: the graph without it (or with sdcli's own default) is off the reference."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from tests.reference import comfy_flow_text_ref as R
from tests.reference.test_comfy_flow_text_parity import comfy_graph

pytestmark = [pytest.mark.parity]
PROMPT, NEGATIVE, SEED, STEPS = "a red cat on a hill", "blurry", 5, 3


def levels(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def template(clip_type, *, aura=None, zero=False, **settings):
    """comfy_graph's loaders, encoders, sampler and latent, with the templates' ModelSamplingAuraFlow between the
    UNETLoader and the sampler (its guider) and the negative as ConditioningZeroOut of the positive."""
    graph = comfy_graph(PROMPT, NEGATIVE, clip_type, seed=SEED, **{"steps": STEPS, **settings})
    holder = graph["22"] if "22" in graph else graph["3"]  # Flux.2: the CFGGuider holds model and conditioning
    if aura is not None:
        graph["40"] = {"class_type": "ModelSamplingAuraFlow", "inputs": {"shift": aura, "model": ["12", 0]}}
        holder["inputs"]["model"] = ["40", 0]
    if zero:
        del graph["7"]
        graph["41"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
        holder["inputs"]["negative"] = ["41", 0]
    return graph


def replay(model, tmp_path, graph, **overrides):
    from tests.io.tool_images import comfy_png
    from tests.reference.test_comfy_parity import replayed

    return replayed(model, comfy_png(tmp_path / "t.png", graph), **overrides)[0]


def zimage(model, cfg, shift, zero, sampler="Euler", steps=STEPS, ms=None):
    from tests.reference import zimage_ref as Z

    pipe = model.pipe
    negative = PROMPT if zero else NEGATIVE
    latent = Z.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, PROMPT, negative, SEED, 32, 32, steps,
                      sampler, "Simple", cfg, shift, encoder=R.zimage_encode, zero_negative=zero, ms=ms)
    return Z.decode(pipe.vae, latent)[0]


def test_zimage_turbo_template(tiny_family_pipe, tmp_path, single_thread):
    """Z-Image Turbo's template (ModelSamplingAuraFlow 3, ConditioningZeroOut negative, CFG 1, KSampler
    res_multistep/simple, EmptySD3LatentImage, CLIPLoader lumina2): 0 levels, no uncond pass at CFG 1; with euler
    in place of res_multistep off. At CFG 2 with shift 2 (euler): 0 levels; the graph with an encoded negative
    instead of the zeros, or without the node's shift (Z-Image's own 3), is off; ModelSamplingSD3 (timesteps
    x 1000) is far off from it, and 0 levels from ComfyUI's result for that node."""
    from tests.reference import comfy_ref as C

    model = tiny_family_pipe("zimage")
    turbo = template("lumina2", aura=3, zero=True, steps=4)
    turbo["3"]["inputs"]["sampler_name"] = "res_multistep"
    theirs = zimage(model, 1.0, 3.0, True, "Res Multistep", steps=4)
    ours, euler = replay(model, tmp_path, turbo), zimage(model, 1.0, 3.0, True, steps=4)
    print(f"zimage turbo: {levels(ours, theirs)}; euler instead of res_multistep {levels(euler, theirs)}")
    assert levels(ours, theirs) == 0 and levels(euler, theirs) > 0
    theirs = zimage(model, 2.0, 2.0, True)
    ours = replay(model, tmp_path, template("lumina2", aura=2, zero=True, cfg=2.0))
    without_zero = replay(model, tmp_path, template("lumina2", aura=2, cfg=2.0))
    without_aura = replay(model, tmp_path, template("lumina2", zero=True, cfg=2.0))
    sd3 = copy.deepcopy(template("lumina2", aura=2, zero=True, cfg=2.0))
    sd3["40"]["class_type"] = "ModelSamplingSD3"
    as_sd3 = replay(model, tmp_path, sd3)
    print(f"zimage cfg 2: {levels(ours, theirs)}; encoded negative {levels(without_zero, theirs)}, no "
          f"ModelSamplingAuraFlow {levels(without_aura, theirs)}, ModelSamplingSD3 {levels(as_sd3, theirs)}")
    assert levels(ours, theirs) == 0
    assert levels(without_zero, theirs) > 0 and levels(without_aura, theirs) > 0 and levels(as_sd3, theirs) > 5
    # ModelSamplingSD3 is what ComfyUI makes of it: the same sigmas, Z-Image's network at timesteps x 1000.
    sd3_theirs = zimage(model, 2.0, 2.0, True, ms=C.DiscreteFlow(shift=2.0, multiplier=1000))
    assert levels(as_sd3, sd3_theirs) == 0


def qwen_image(model, ms=None, width=32, height=32, comfy_positions=True):
    from tests.reference import qwenimage_ref as Q

    return Q.sample(model.pipe, PROMPT, NEGATIVE, SEED, width, height, STEPS, "Euler", "Simple", 2.5, 1.15,
                    encoder=R.qwen_image_encode, ms=ms, comfy_positions=comfy_positions)


def test_qwen_image_template(tiny_family_pipe, tmp_path, single_thread):
    """Qwen-Image's template (ModelSamplingAuraFlow 3.1, CFG 2.5, a negative prompt, CLIPLoader qwen_image): the
    node replaces Qwen-Image's Flux-style table (mu 1.15, 10,000 sigmas) by 1000 discrete sigmas shifted by 3.1:
    0 levels; without the node far off; the same shift as Flux's mu (ln 3.1 on the 10,000 sigmas) off too."""
    from tests.reference import comfy_ref as C

    model = tiny_family_pipe("qwen-image")
    aura = C.DiscreteFlow(shift=3.1, multiplier=1.0)
    theirs = qwen_image(model, aura)
    ours = replay(model, tmp_path, template("qwen_image", aura=3.1, cfg=2.5))
    without = replay(model, tmp_path, template("qwen_image", cfg=2.5))
    as_mu = replay(model, tmp_path, template("qwen_image", cfg=2.5), shift=math.log(3.1))
    print(f"qwen-image: {levels(ours, theirs)}; without the node {levels(without, theirs)}, its shift as mu "
          f"{levels(as_mu, theirs)}")
    assert levels(ours, theirs) == 0 and levels(without, theirs) > 5 and levels(as_mu, theirs) > 0


def test_qwen_image_template_at_an_odd_token_grid(tiny_family_pipe, tmp_path, single_thread):
    """The template at 48x40 px (a 3x3 token grid, the second side wrapped round to it; odd, as the released model's
    native 1328 px is 83 tokens a side): ComfyUI centres an odd side's rotary positions half a token off diffusers'.
    The replay (ComfyUI's path, --emphasis comfy) is 0 levels from the transcription at ComfyUI's positions; the
    same graph on sdcli's own path (--emphasis original) keeps diffusers' positions: 0 levels from the
    transcription run at those, and both are off the other."""
    from tests.reference import comfy_ref as C

    model = tiny_family_pipe("qwen-image")
    aura = C.DiscreteFlow(shift=3.1, multiplier=1.0)
    graph = template("qwen_image", aura=3.1, cfg=2.5)
    graph["5"]["inputs"].update(width=48, height=40)
    theirs = qwen_image(model, aura, 48, 40)
    diffusers = qwen_image(model, aura, 48, 40, comfy_positions=False)
    ours, own = replay(model, tmp_path, graph), replay(model, tmp_path, graph, emphasis="original")
    print(f"qwen-image 48x40: {levels(ours, theirs)}; diffusers' positions {levels(diffusers, theirs)}, sdcli's own "
          f"path {levels(own, theirs)} (from diffusers' positions {levels(own, diffusers)})")
    assert ours.shape == theirs.shape == (40, 48, 3)
    assert levels(ours, theirs) == 0 and levels(own, diffusers) == 0
    assert levels(diffusers, theirs) > 0 and levels(own, theirs) > 0


def flux2(model, encoder, cfg, zero=False, guidance=None):
    from tests.reference import flux2_ref as F2

    pipe = model.pipe
    latent = F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, PROMPT, PROMPT if zero else NEGATIVE, SEED,
                       32, 32, STEPS, "Euler", "Flux2", cfg, guidance=guidance, encoder=encoder, zero_negative=zero)
    return F2.decode(pipe.vae, latent)[0]


def test_flux2_klein_template(tiny_family_pipe, tmp_path, single_thread):
    """Flux.2 klein's template (SamplerCustomAdvanced: RandomNoise, CFGGuider with ConditioningZeroOut's negative,
    KSamplerSelect euler, Flux2Scheduler, EmptyFlux2LatentImage; CLIPLoader flux2): at CFG 1 (the distilled
    model's) 0 levels; at CFG 4 (the base model's) 0 levels, and off with the negative encoded instead."""
    model = tiny_family_pipe("flux2-klein")
    distilled = replay(model, tmp_path, template("flux2", flux2=True, zero=True))
    assert levels(distilled, flux2(model, R.klein_encode, 1.0)) == 0
    theirs = flux2(model, R.klein_encode, 4.0, zero=True)
    ours = replay(model, tmp_path, template("flux2", flux2=True, zero=True, cfg=4.0))
    encoded = replay(model, tmp_path, template("flux2", flux2=True, cfg=4.0))
    print(f"flux2-klein cfg 4: {levels(ours, theirs)}; encoded negative {levels(encoded, theirs)}")
    assert levels(ours, theirs) == 0 and levels(encoded, theirs) > 0


def test_flux2_dev_without_flux_guidance(tiny_family_pipe, tmp_path, single_thread):
    """A Flux.2 dev graph without FluxGuidance runs at ComfyUI's guidance 3.5 (not diffusers' 4, sdcli's own
    default): 0 levels against the reference at 3.5; at 4 the pixels move."""
    model = tiny_family_pipe("flux2-dev")
    graph = template("flux2", flux2=True)
    theirs = flux2(model, R.flux2_dev_encode, 1.0, guidance=3.5)
    ours = replay(model, tmp_path, graph)
    at_4 = replay(model, tmp_path, graph, distilled_cfg_scale=4.0)
    print(f"flux2-dev: {levels(ours, theirs)}; at sdcli's 4.0 {levels(at_4, theirs)}")
    assert levels(ours, theirs) == 0 and levels(at_4, theirs) > 0


def chroma_template(aura=1.0, steps=4):
    """Chroma's template (image_chroma_text_to_image): UNETLoader -> ModelSamplingAuraFlow ("Flow Shift", 1),
    CLIPLoader chroma, two CLIPTextEncode, CFGGuider 3.5, RandomNoise, KSamplerSelect euler, BasicScheduler beta,
    SamplerCustomAdvanced on EmptySD3LatentImage, T5TokenizerOptions (min_padding 0, min_length 0) between the
    CLIPLoader and both encoders."""
    graph = comfy_graph(PROMPT, NEGATIVE, "chroma", seed=SEED, steps=steps)
    graph["13"] = {"class_type": "T5TokenizerOptions", "inputs": {"min_padding": 0, "min_length": 0,
                                                                  "clip": ["11", 0]}}
    graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["13", 0]
    model = ["12", 0]
    if aura is not None:
        graph["40"] = {"class_type": "ModelSamplingAuraFlow", "inputs": {"shift": aura, "model": model}}
        model = ["40", 0]
    graph.update({
        "22": {"class_type": "CFGGuider", "inputs": {"cfg": 3.5, "model": model, "positive": ["6", 0],
                                                     "negative": ["7", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "beta", "steps": steps, "denoise": 1.0,
                                                          "model": model}},
        "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                "latent_image": ["5", 0]}},
    })
    return graph


def test_chroma_template(tiny_family_pipe, tmp_path, single_thread):
    """Chroma's template: ModelSamplingAuraFlow 1 replaces Chroma's ModelSamplingFlux table (mu 1.15) by 1000
    linear sigmas, and BasicScheduler's beta is ComfyUI's (table sigmas at rounded beta quantiles: sdcli's
    Comfy Beta), not the WebUI's Beta: 0 levels; without the node, or with the WebUI's Beta, off."""
    from tests.reference import chroma_ref as C_
    from tests.reference import comfy_ref as C

    model = tiny_family_pipe("chroma")

    def encode(tokenizer, t5, text):
        return R.chroma_encode(tokenizer, t5, text), None

    theirs = C_.sample_chroma(model.pipe, PROMPT, NEGATIVE, SEED, steps=4, schedule="Beta", cfg=3.5, encoder=encode,
                              ms=C.DiscreteFlow(shift=1.0, multiplier=1.0))
    ours = replay(model, tmp_path, chroma_template())
    without = replay(model, tmp_path, chroma_template(aura=None))
    webui_beta = replay(model, tmp_path, chroma_template(), schedule="beta")
    print(f"chroma: {levels(ours, theirs)}; without the node {levels(without, theirs)}, the WebUI's Beta "
          f"{levels(webui_beta, theirs)}")
    assert levels(ours, theirs) == 0 and levels(without, theirs) > 5 and levels(webui_beta, theirs) > 0


def test_template_replays_as_a_command_line(tmp_path):
    """The mapped nodes are flags: replay --dry-run's command runs the same job (ModelSamplingAuraFlow: --shift with
    --model-sampling auraflow; ConditioningZeroOut: --zero-negative, the negative prompt the zeroed one's text)."""
    from sdcli.io.replay import plan_replay
    from sdcli.request.flags import as_command
    from tests.io.tool_images import comfy_png

    graph = template("lumina2", aura=3, zero=True)
    plan = plan_replay(comfy_png(tmp_path / "z.png", graph), check_model=False)
    command = as_command(plan.request, "m")
    assert "--shift 3 --model-sampling auraflow --zero-negative" in command
    assert f"--negative-prompt '{PROMPT}'" in command
    # The newer templates are subgraphs: the frontend writes their inner nodes as "OUTER:INNER" ids.
    inner = {f"57:{key}": {**node, "inputs": {name: [f"57:{value[0]}", value[1]] if isinstance(value, list) else value
                                              for name, value in node["inputs"].items()}}
             for key, node in graph.items()}
    plan = plan_replay(comfy_png(tmp_path / "s.png", inner), check_model=False)
    assert as_command(plan.request, "m") == command
    # Two ModelSampling nodes in the chain: the one nearer the sampler patches last, and runs.
    graph["42"] = {"class_type": "ModelSamplingSD3", "inputs": {"shift": 6.0, "model": ["40", 0]}}
    graph["3"]["inputs"]["model"] = ["42", 0]
    plan = plan_replay(comfy_png(tmp_path / "n.png", graph), check_model=False)
    assert (plan.request.model_sampling, plan.request.shift) == ("sd3", 6.0)


def test_zimage_turbo_template_as_the_ui_saves_it(tmp_path):
    """Z-Image Turbo's template read from the UI `workflow` chunk alone (its widgets_values in the UI's order, as the
    template file has them: KSampler's control_after_generate, CLIPLoader's device): the same settings."""
    from sdcli.io.replay import read_metadata
    from tests.io.tool_images import comfy_png

    links = [[13, 11, 0, 3, 0, "MODEL"], [26, 28, 0, 11, 0, "MODEL"], [28, 30, 0, 27, 0, "CLIP"],
             [30, 27, 0, 3, 1, "CONDITIONING"], [32, 27, 0, 33, 0, "CONDITIONING"],
             [33, 33, 0, 3, 2, "CONDITIONING"], [17, 13, 0, 3, 3, "LATENT"], [14, 3, 0, 8, 0, "LATENT"],
             [27, 29, 0, 8, 1, "VAE"], [16, 8, 0, 9, 0, "IMAGE"]]

    def node(node_id, kind, widgets, *inputs):
        return {"id": node_id, "type": kind, "mode": 0, "widgets_values": widgets,
                "inputs": [{"name": name, "link": link} for name, link in inputs]}

    nodes = [node(28, "UNETLoader", ["z_image_turbo_bf16.safetensors", "default"]),
             node(11, "ModelSamplingAuraFlow", [3], ("model", 26)),
             node(30, "CLIPLoader", ["qwen_3_4b.safetensors", "lumina2", "default"]),
             node(29, "VAELoader", ["ae.safetensors"]),
             node(27, "CLIPTextEncode", [PROMPT], ("clip", 28)),
             node(33, "ConditioningZeroOut", [], ("conditioning", 32)),
             node(13, "EmptySD3LatentImage", [1024, 1024, 1]),
             node(3, "KSampler", [0, "randomize", 8, 1, "res_multistep", "simple", 1], ("model", 13),
                  ("positive", 30), ("negative", 33), ("latent_image", 17)),
             node(8, "VAEDecode", [], ("samples", 14), ("vae", 27)),
             node(9, "SaveImage", ["z-image-turbo"], ("images", 16)),
             node(35, "MarkdownNote", ["## Model links"])]
    meta = read_metadata(comfy_png(tmp_path / "ui.png", workflow={"nodes": nodes, "links": links, "version": 0.4}))
    assert meta.unmapped == ()
    assert {k: meta.parameters[k] for k in ("Sampler", "Steps", "CFG scale", "Shift", "Model sampling",
                                            "Zero negative", "Size")} == {
        "Sampler": "Res Multistep", "Steps": "8", "CFG scale": "1", "Shift": "3", "Model sampling": "AuraFlow",
        "Zero negative": "True", "Size": "1024x1024"}
    assert meta.negative_prompt == PROMPT


def test_model_sampling_is_refused_on_an_sd_model(tiny_model):
    """--model-sampling sets a flow model's sigmas: an SD model refuses it before loading, naming the flag."""
    from sdcli.errors import UsageError
    from sdcli.job.family_rules import family_of, for_family
    from sdcli.models.resolve import ModelRef
    from sdcli.request.generation import GenerationRequest

    family = family_of(ModelRef(tiny_model, "tiny"))
    with pytest.raises(UsageError, match="^--model-sampling: Stable Diffusion 1.x models have no flow sigmas to set"):
        for_family(GenerationRequest(prompt="x", model_sampling="auraflow"), family)


# ------------------------------------------------------------------ nodes sdcli does not map: refused by name

# Nodes of the official templates sdcli does not map, each with what it does in ComfyUI (why a replay without it
# would not be ComfyUI's image). CFGNorm, ReferenceLatent, FluxKontextImageScale, TextEncodeQwenImageEdit(Plus),
# ImageScaleToTotalPixels and GetImageSize are mapped: the edit templates' tests (test_comfy_edit_templates.py,
# test_comfy_qwen_edit_templates.py, test_comfy_flux2_edit_templates.py).
REFUSED = {
    "FluxKontextMultiReferenceLatentMethod": "edits: the references' placement (offset, index, uxo) set by the graph",
    "EmptyHunyuanLatentImage": "a video latent (frames) where the image templates use EmptySD3LatentImage",
    "ConditioningCombine": "Z-Image Turbo's newer template: two prompts' conditionings sampled together",
}


@pytest.mark.parametrize("node", REFUSED)
def test_unmapped_template_nodes_are_refused_by_name(tmp_path, node):
    """A template node sdcli does not map stops the replay before anything loads, named in one line (exit 2)."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = template("qwen_image", aura=3.1, cfg=2.5)
    graph["50"] = {"class_type": node, "inputs": {"model": ["40", 0], "conditioning": ["6", 0]}}
    with pytest.raises(UsageError, match=f"does not map: nodes {node}$") as error:
        plan_replay(comfy_png(tmp_path / "r.png", graph), model_override="m")
    assert error.value.exit_code == 2 and "\n" not in str(error.value)


@pytest.mark.parametrize("options,loader", [((1, 0), "chroma"), ((0, 256), "chroma"), ((0, 0), "flux")])
def test_t5_tokenizer_options_other_than_chromas_own_are_refused(tmp_path, options, loader):
    """T5TokenizerOptions is read only where it changes nothing (Chroma's T5 is unpadded): padding, a longer
    min_length or another model's T5 (Flux pads to 256) are refused, naming the node and its values."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = chroma_template()
    graph["13"]["inputs"].update(min_padding=options[0], min_length=options[1])
    graph["11"]["inputs"]["type"] = loader
    with pytest.raises(UsageError, match=f"does not map: T5TokenizerOptions min_padding {options[0]}, "
                                         f"min_length {options[1]} "):
        plan_replay(comfy_png(tmp_path / "t.png", graph), model_override="m")


def test_zero_out_of_the_positive_is_refused(tmp_path):
    """sdcli zeroes only the negative: a ConditioningZeroOut on the positive conditioning is refused by name."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = template("lumina2", aura=3, cfg=2.0)
    graph["41"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    graph["3"]["inputs"]["positive"] = ["41", 0]
    with pytest.raises(UsageError, match="does not map: a ConditioningZeroOut on the positive conditioning$"):
        plan_replay(comfy_png(tmp_path / "p.png", graph), model_override="m")

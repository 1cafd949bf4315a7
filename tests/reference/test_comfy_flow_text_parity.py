"""ComfyUI's text paths for Flux.2 (dev, klein), Z-Image, Qwen-Image and Chroma (--emphasis comfy, which a
replayed ComfyUI graph sets) vs an independent transcription (comfy_flow_text_ref), on the tiny models: the
conditioning equal, and a ComfyUI graph replayed through sdcli's job in ComfyUI's pixels (0 levels). Each check
is shown to fail with sdcli's default text path (diffusers' encoding) where the two differ, or with the prompt
read otherwise where only the reading of brackets differs (klein, Z-Image and Qwen-Image encode a plain prompt as
diffusers does)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from tests.reference import comfy_flow_text_ref as R

pytestmark = [pytest.mark.parity]

# tiny family arch -> the reference's CLIPTextEncode for it
ARCHES = {"flux2-dev": R.flux2_dev_encode, "flux2-klein": R.klein_encode, "zimage": R.zimage_encode,
          "qwen-image": R.qwen_image_encode, "chroma": R.chroma_encode}
PROMPTS = ["a red cat on a hill", "a (red:1.4) cat, [photo] \\(sic\\) BREAK hill"]


def ours(model, emphasis, text):
    """sdcli's conditioning of `text` by the family's own prompt encoder in emphasis mode `emphasis`."""
    encoder = model.family.prompt_encoder(model.pipe, 1, emphasis, (32, 32))
    with torch.no_grad():
        return encoder.encode(text)


@contextmanager
def pad_embedding(model, scale=4.0):
    """The text encoder's pad-token embedding made non-zero (seeded) for the block, then put back: the tiny
    Mistral model's is zero (padding_idx), which makes diffusers' left padding ComfyUI's zeros by accident."""
    tokenizer = getattr(model.pipe.tokenizer, "tokenizer", model.pipe.tokenizer)
    weight = model.pipe.text_encoder.get_input_embeddings().weight
    row, kept = tokenizer.pad_token_id, weight.data[tokenizer.pad_token_id].clone()
    weight.data[row] = scale * torch.randn(kept.shape, generator=torch.manual_seed(0))
    try:
        yield
    finally:
        weight.data[row] = kept


def most(a, b):
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_conditioning_is_comfyuis(tiny_family_pipe, arch, prompt):
    model = tiny_family_pipe(arch)
    theirs = ARCHES[arch](model.pipe.tokenizer, model.pipe.text_encoder, prompt)
    cond = ours(model, "comfy", prompt)
    print(f"{arch} {prompt!r}: {tuple(cond.crossattn.shape)} vs {tuple(theirs.shape)}, "
          f"max difference {most(cond.crossattn, theirs)}")
    assert cond.crossattn.shape == theirs.shape and most(cond.crossattn, theirs) < 1e-5
    assert "mask" not in cond.extra or bool(cond.extra["mask"].all())


def test_default_text_path_differs_where_comfyui_encodes_otherwise(tiny_family_pipe):
    """Flux.2 dev: diffusers' left-padded encoding (sdcli's default) is far from ComfyUI's zeros in front with a
    non-zero pad embedding, as a released model has (the tiny one's is zero: the same by accident). Chroma: the
    default attends the first pad token too (its states as T5 gives them), ComfyUI none (the pixel test shows the
    effect). Klein, Z-Image and Qwen-Image encode a plain prompt as ComfyUI does, and refuse the bracketed one that
    ComfyUI reads as text."""
    from sdcli.errors import UsageError

    dev = tiny_family_pipe("flux2-dev")
    theirs = R.flux2_dev_encode(dev.pipe.tokenizer, dev.pipe.text_encoder, PROMPTS[0])
    with pad_embedding(dev):
        default = ours(dev, "original", PROMPTS[0]).crossattn
        assert most(ours(dev, "comfy", PROMPTS[0]).crossattn, theirs) < 1e-5
    print(f"flux2-dev: default vs ComfyUI's, max difference {most(default, theirs)}")
    assert most(default, theirs) > 0.01
    chroma = tiny_family_pipe("chroma")
    theirs = R.chroma_encode(chroma.pipe.tokenizer, chroma.pipe.text_encoder, PROMPTS[0])
    default = ours(chroma, "original", PROMPTS[0])
    attended = default.crossattn[:, default.extra["mask"][0].bool()]
    print(f"chroma: default attends {attended.shape[1]} tokens (one pad), ComfyUI's {theirs.shape[1]}")
    assert attended.shape[1] == theirs.shape[1] + 1 and most(attended[:, :-1], theirs) < 1e-5
    for arch in ("flux2-klein", "zimage", "qwen-image"):
        model = tiny_family_pipe(arch)
        theirs = ARCHES[arch](model.pipe.tokenizer, model.pipe.text_encoder, PROMPTS[0])
        assert most(ours(model, "original", PROMPTS[0]).crossattn, theirs) < 1e-5
        with pytest.raises(UsageError, match="^prompt: "):
            ours(model, "original", PROMPTS[1])


def test_qwen_image_own_template_and_long_prompts(tiny_family_pipe):
    """ComfyUI takes a Qwen-Image prompt that starts with <|im_start|> as the whole template and cuts a prompt at no
    length (diffusers: 1024 tokens after the template's start); Flux.2 klein pads to 512 and cuts nothing."""
    model = tiny_family_pipe("qwen-image")
    own = "<|im_start|>system\nDraw it.<|im_end|>\n<|im_start|>user\na red cat<|im_end|>\n<|im_start|>assistant\n"
    long = "a red cat on a hill, " * 60  # 1260 tokens with the tiny character-level tokenizer
    for text in (own, long):
        theirs = R.qwen_image_encode(model.pipe.tokenizer, model.pipe.text_encoder, text)
        assert most(ours(model, "comfy", text).crossattn, theirs) < 1e-5
        assert most(ours(model, "original", text).crossattn, theirs) > 0.01
    klein = tiny_family_pipe("flux2-klein")
    theirs = R.klein_encode(klein.pipe.tokenizer, klein.pipe.text_encoder, long)
    assert theirs.shape[1] > 512 and most(ours(klein, "comfy", long).crossattn, theirs) < 1e-5


# ---------------------------------------------------------------- replayed ComfyUI graphs, in pixels

def comfy_graph(prompt, negative, clip_type, *, seed=5, steps=3, cfg=1.0, guidance=None, flux2=False):
    """A ComfyUI API graph as its templates for these families build it (UNETLoader, CLIPLoader of `clip_type`,
    VAELoader, CLIPTextEncode x2, 32x32): Flux.2 with SamplerCustomAdvanced (RandomNoise, CFGGuider,
    KSamplerSelect euler, Flux2Scheduler, EmptyFlux2LatentImage; FluxGuidance when `guidance`), the others with
    KSampler euler/simple on EmptySD3LatentImage."""
    graph = {
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "vae.safetensors"}},
        "11": {"class_type": "CLIPLoader", "inputs": {"clip_name": "text.safetensors", "type": clip_type}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "model.safetensors", "weight_dtype": "default"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["11", 0]}},
        "5": {"class_type": "EmptyFlux2LatentImage" if flux2 else "EmptySD3LatentImage",
              "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    positive = ["6", 0]
    if guidance is not None:
        graph["60"] = {"class_type": "FluxGuidance", "inputs": {"guidance": guidance, "conditioning": positive}}
        positive = ["60", 0]
    if not flux2:
        graph["3"] = {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "model": ["12", 0], "positive": positive, "negative": ["7", 0], "latent_image": ["5", 0]}}
        return graph
    graph.update({
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "22": {"class_type": "CFGGuider", "inputs": {"cfg": cfg, "model": ["12", 0], "positive": positive,
                                                     "negative": ["7", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "Flux2Scheduler", "inputs": {"steps": steps, "width": 32, "height": 32}},
        "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                "latent_image": ["5", 0]}},
    })
    return graph


def flux2_reference(encoder, guidance=None):
    def reference(pipe, prompt, negative, seed, steps, cfg):
        from tests.reference import flux2_ref as F2

        latent = F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, negative, seed, 32, 32, steps,
                           "Euler", "Flux2", cfg, guidance=guidance, encoder=encoder)
        return F2.decode(pipe.vae, latent)[0]
    return reference


def zimage_reference(pipe, prompt, negative, seed, steps, cfg):
    from tests.reference import zimage_ref as Z

    latent = Z.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, negative, seed, 32, 32, steps,
                      "Euler", "Simple", cfg, 3.0, encoder=R.zimage_encode)
    return Z.decode(pipe.vae, latent)[0]


def qwen_image_reference(pipe, prompt, negative, seed, steps, cfg):
    from tests.reference import qwenimage_ref as Q

    return Q.sample(pipe, prompt, negative, seed, 32, 32, steps, "Euler", "Simple", cfg, 1.15,
                    encoder=R.qwen_image_encode)


def chroma_reference(pipe, prompt, negative, seed, steps, cfg):
    from tests.reference import chroma_ref as C

    return C.sample_chroma(pipe, prompt, negative, seed, steps=steps, cfg=cfg,
                           encoder=lambda tokenizer, t5, text: (R.chroma_encode(tokenizer, t5, text), None))


# arch -> (CLIPLoader type, graph settings, reference); prompts with brackets, which ComfyUI reads as text for the
# LLM encoders and as weights for Chroma's T5
REPLAYS = {
    "flux2-dev": ("flux2", {"flux2": True, "guidance": 4.0}, flux2_reference(R.flux2_dev_encode, 4.0)),
    "flux2-klein": ("flux2", {"flux2": True, "cfg": 2.0}, flux2_reference(R.klein_encode)),
    "zimage": ("lumina2", {"steps": 3}, zimage_reference),
    "qwen-image": ("qwen_image", {"cfg": 2.5}, qwen_image_reference),
    "chroma": ("chroma", {"cfg": 4.0}, chroma_reference),
}
REPLAY_PROMPT, REPLAY_NEGATIVE = "\\(sic\\) a (red:1.3) cat on a hill, [photo]", "blurry"
PLAIN = "a red cat on a hill"


def replay(model, arch, tmp_path, prompt=REPLAY_PROMPT, emphasis=None):
    """The family's graph written as ComfyUI saves it, replayed by sdcli (its job); `emphasis`: another text path
    than the one the graph asks for (--emphasis)."""
    from tests.io.tool_images import comfy_png
    from tests.reference.test_comfy_parity import replayed

    clip_type, settings, _ = REPLAYS[arch]
    image = comfy_png(tmp_path / f"{arch}.png", comfy_graph(prompt, REPLAY_NEGATIVE, clip_type, **settings))
    return replayed(model, image, **({"emphasis": emphasis} if emphasis else {}))[0]


def comfyui(model, arch, prompt=REPLAY_PROMPT):
    _, settings, reference = REPLAYS[arch]
    return reference(model.pipe, prompt, REPLAY_NEGATIVE, 5, settings.get("steps", 3), settings.get("cfg", 1.0))


def levels(a, b):
    return int(abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("arch", REPLAYS)
def test_replayed_comfyui_graph_gives_comfyuis_pixels(tiny_family_pipe, tmp_path, arch, single_thread):
    """0 levels with ComfyUI's text path (what a replayed graph asks for: --emphasis comfy). sdcli's default text
    path refuses the graph's bracketed prompt (exit 2); the LLM encoders' text as written (--emphasis none: the
    escapes kept, diffusers' padding) moves the pixels (Qwen-Image 29 levels, Z-Image 3; the tiny Flux.2
    transformer answers its text weakly: 1 level, also for Flux.2 dev's left padding with a non-zero pad
    embedding, whose conditioning is far off); Chroma's default on a plain prompt is 28 levels off (it attends a
    pad token)."""
    from sdcli.errors import UsageError

    model = tiny_family_pipe(arch)
    theirs = comfyui(model, arch)
    ours_ = replay(model, arch, tmp_path)
    print(f"{arch}: max difference {levels(ours_, theirs)}")
    assert levels(ours_, theirs) == 0
    with pytest.raises(UsageError, match="weight"):
        replay(model, arch, tmp_path, emphasis="original")
    if arch == "chroma":
        plain = levels(replay(model, arch, tmp_path, PLAIN, "original"), comfyui(model, arch, PLAIN))
        print(f"chroma, plain prompt, default text path: max difference {plain}")
        assert plain > 5
        return
    written = levels(replay(model, arch, tmp_path, emphasis="none"), theirs)
    print(f"{arch}: the prompt as written (--emphasis none): max difference {written}")
    assert written > 0
    if arch == "flux2-dev":
        with pad_embedding(model):
            assert levels(replay(model, arch, tmp_path, PLAIN), comfyui(model, arch, PLAIN)) == 0
            padded = levels(replay(model, arch, tmp_path, PLAIN, "none"), comfyui(model, arch, PLAIN))
        print(f"flux2-dev, plain prompt, diffusers' padding, non-zero pad embedding: max difference {padded}")
        assert padded > 0

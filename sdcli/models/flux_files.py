"""What a Flux.1 weight file holds, from its header alone: which component, which key layout, which variant.

Flux weights circulate as separate files (BFL's flux1-dev.safetensors and ae.safetensors,
ComfyUI's clip_l / t5xxl files, city96's GGUFs, diffusers' folders) and as ComfyUI / Comfy-Org
all-in-one checkpoints. inspect_flux_file reads a safetensors header (or a GGUF's tensor
table) and says which of them a file is, without loading a tensor. It also tells the other flow
families' part files apart: Qwen3 and Qwen2.5-VL text encoders, Qwen-Image's and Flux.2's VAEs; and their
all-in-one checkpoints as ComfyUI saves them (the transformer under "model.diffusion_model.", each text encoder
under "text_encoders.<name>.transformer.", the VAE under "vae."): held_parts finds each part by its own tensors,
inspect_part reads one part of such a file as if it stood alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from sdcli.models.flux_keys import COMFY_TRANSFORMER, COMFY_VAE, DIFFUSERS_TRANSFORMER, LDM_VAE
from sdcli.models.scaled_fp8 import is_side_tensor

Shapes = dict[str, list[int]]

BFL_MARKS = ("double_blocks.0.img_attn.qkv.weight", "img_in.weight")
DIFFUSERS_MARKS = ("transformer_blocks.0.attn.to_q.weight", "x_embedder.weight")
CLIP_MARK = "embeddings.position_embedding.weight"
T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
# Qwen text models in transformers' names (ComfyUI's text_encoders files: under "model."): Qwen3 normalises its
# queries (q_norm); Qwen2.5-VL has biased projections and a vision tower.
QWEN3_MARK = "layers.0.self_attn.q_norm.weight"
QWEN_EMBED = "embed_tokens.weight"
QWEN25_MARK = "layers.0.self_attn.q_proj.bias"
QWEN25_VISION = "visual.patch_embed.proj.weight"
T5_GGUF_MARK, LLAMA_CPP_EMBED = "enc.blk.0.attn_q.weight", "token_embd.weight"  # llama.cpp's names (GGUF)
QWEN3_GGUF_MARK, QWEN25_GGUF_MARK = "blk.0.attn_q_norm.weight", "blk.0.attn_q.bias"
LLAMA_GGUF_MARK = "blk.0.attn_q.weight"  # Mistral Small 3 (llama.cpp's llama / mistral3): no query norm, no biases
# Mistral Small 3's text model (Flux.2 dev; ComfyUI's mistral_3_small_flux2_*.safetensors: under "model."): the
# Llama layout, no query norm, no biases (Qwen2.5's projections have them).
MISTRAL_MARK = "layers.0.self_attn.q_proj.weight"
LDM_VAE_MARK = "encoder.down.0.block.0.conv1.weight"
DIFFUSERS_VAE_MARK = "encoder.down_blocks.0.resnets.0.conv1.weight"
COMFY_TEXT = "text_encoders."  # ComfyUI's checkpoints: each text encoder under text_encoders.<its name>.
# Part kind -> the role an all-in-one checkpoint's part plays (models.flux_parts.ENCODERS' roles, and "vae").
PART_ROLES = {"clip-l": "clip_l", "t5xxl": "t5xxl", "qwen3": "qwen3", "qwen2.5-vl": "qwen25vl", "flux-vae": "vae",
              "qwen-vae": "vae", "flux2-vae": "vae"}
FLUX_LATENT_CHANNELS = 16
FLUX2_LATENT_CHANNELS = 32
FILL_IN_CHANNELS = 384  # 64 packed latent + 64 packed masked image + 256 packed mask
DEPTH_IN_CHANNELS = 128


@dataclass(frozen=True)
class FluxFile:
    """What one Flux-related weight file holds (kind None: not a Flux file sdcli knows)."""

    kind: str | None  # "flux-transformer", "flux-all-in-one", "all-in-one" (another family's), "clip-l", "t5xxl",
    # "qwen3", "qwen2.5-vl", "mistral3", "flux-vae", "qwen-vae", "flux2-vae"
    layout: str | None  # transformer: "bfl", "comfy", "diffusers"; VAE: "ldm", "diffusers"; text: "transformers",
    # "llama.cpp" (a GGUF's names)
    dtype: str | None = None  # the dominant stored dtype: F8_E4M3, F8_E5M2, BF16, F16, F32 (GGUF: Q8_0, ...)
    container: str = "safetensors"  # or "gguf"
    prefix: str = ""  # the key prefix of the component (transformer's, in an all-in-one file)
    guidance: bool | None = None  # a guidance embedding: dev (distilled CFG) rather than schnell
    in_channels: int | None = None  # 64; Fill: 384; Depth/Canny: 128
    double_blocks: int | None = None
    single_blocks: int | None = None
    width: int | None = None  # transformer hidden width (3072) or a text encoder's / the VAE's first width
    parts: tuple[str, ...] = ()  # all-in-one: "transformer" and the roles of held_parts ("clip_l", "qwen3", "vae")
    vae_prefix: str | None = None  # all-in-one: "vae." (ComfyUI) or "first_stage_model."
    scaled: bool = False  # ComfyUI's fp8 scales or quantization markers beside its weights (models.scaled_fp8)

    @property
    def variant(self) -> str | None:
        """dev, schnell, fill or depth, from the transformer's shapes."""
        if self.in_channels == FILL_IN_CHANNELS:
            return "fill"
        if self.in_channels == DEPTH_IN_CHANNELS:
            return "depth"
        if self.guidance is None:
            return None
        return "dev" if self.guidance else "schnell"


def read_tensor_table(path: Path) -> tuple[Shapes, dict[str, str], str]:
    """Shapes (torch order), stored dtypes and container of a safetensors or GGUF file, without loading data."""
    if path.suffix.lower() == ".gguf":
        from gguf import GGUFReader

        reader = GGUFReader(path)  # memory-mapped: reads the tensor table, not the data
        shapes = {t.name: [int(n) for n in reversed(t.shape)] for t in reader.tensors}  # GGUF lists ne0 first
        return shapes, {t.name: t.tensor_type.name for t in reader.tensors}, "gguf"
    from sdcli.models.header import read_dtypes, read_header

    shapes, _ = read_header(path)
    return shapes, read_dtypes(path), "safetensors"


def _dominant(dtypes: dict[str, str], shapes: Shapes, names: list[str]) -> str | None:
    """The dtype holding the most elements among `names`."""
    weight: Counter[str] = Counter()
    for name in names:
        count = 1
        for n in shapes[name]:
            count *= n
        weight[dtypes[name]] += count
    return weight.most_common(1)[0][0] if weight else None


def _prefix_of(shapes: Shapes, mark: str) -> str | None:
    """The prefix before `mark` on the shortest key ending in it (None when no key does)."""
    hits = sorted((k for k in shapes if k == mark or k.endswith("." + mark)), key=len)
    return hits[0][: -len(mark)] if hits else None


def _transformer_facts(shapes: Shapes, prefix: str) -> dict[str, object]:
    """Variant facts of a BFL-layout transformer under `prefix`."""
    def count(block: str) -> int:
        return len({k.split(".")[1] for k in (k[len(prefix):] for k in shapes if k.startswith(prefix + block))})

    img_in = shapes[prefix + "img_in.weight"]
    return {"guidance": prefix + "guidance_in.in_layer.weight" in shapes, "in_channels": int(img_in[1]),
            "width": int(img_in[0]), "double_blocks": count("double_blocks."), "single_blocks": count("single_blocks.")}


def _diffusers_facts(shapes: Shapes, prefix: str) -> dict[str, object]:
    """Variant facts of a diffusers-layout transformer under `prefix`."""
    def count(block: str) -> int:
        return len({k[len(prefix) + len(block):].split(".")[0] for k in shapes if k.startswith(prefix + block)})

    x_in = shapes[prefix + "x_embedder.weight"]
    return {"guidance": prefix + "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
            "in_channels": int(x_in[1]), "width": int(x_in[0]),
            "double_blocks": count("transformer_blocks."), "single_blocks": count("single_transformer_blocks.")}


def _vae_layout(shapes: Shapes, prefix: str) -> tuple[str, int, int] | None:
    """(layout, latent channels, first width) of a VAE under `prefix`, or None."""
    conv_out = shapes.get(prefix + "encoder.conv_out.weight")
    if conv_out is None:
        return None
    if prefix + LDM_VAE_MARK in shapes:
        layout = "ldm"
    elif prefix + DIFFUSERS_VAE_MARK in shapes:
        layout = "diffusers"
    else:
        return None
    return layout, int(conv_out[0]) // 2, int(shapes[prefix + "encoder.conv_in.weight"][0])


def _llama_cpp_encoder(shapes: Shapes) -> tuple[str, int] | None:
    """(kind, width) of a text encoder in llama.cpp's tensor names: a T5 encoder (enc.blk.*, city96's GGUFs), Qwen3
    (normalised queries), Qwen2.5-VL's language model (biased projections; its vision tower is not in the file),
    Mistral Small 3's text model (neither: the llama layout, as the safetensors files are told apart)."""
    if T5_GGUF_MARK in shapes:
        return "t5xxl", int(shapes[T5_GGUF_MARK][1])
    embed = shapes.get(LLAMA_CPP_EMBED)
    if embed is None:
        return None
    if QWEN3_GGUF_MARK in shapes:
        return "qwen3", int(embed[1])
    if QWEN25_GGUF_MARK in shapes:
        return "qwen2.5-vl", int(embed[1])
    return ("mistral3", int(embed[1])) if LLAMA_GGUF_MARK in shapes else None


def _bundle_prefixes(shapes: Shapes) -> list[str]:
    """The prefixes of the parts an all-in-one checkpoint may hold beside its transformer: each ComfyUI text
    encoder ("text_encoders.<name>.transformer.", or "text_encoders.<name>." where it has no "transformer."),
    and the VAE ("vae.", or the ldm checkpoints' "first_stage_model.")."""
    names = {k.split(".", 2)[1] for k in shapes if k.startswith(COMFY_TEXT) and k.count(".") > 1}
    prefixes = []
    for name in sorted(names):
        inner = f"{COMFY_TEXT}{name}.transformer."
        prefixes.append(inner if any(k.startswith(inner) for k in shapes) else f"{COMFY_TEXT}{name}.")
    return prefixes + [p for p in (COMFY_VAE, LDM_VAE) if any(k.startswith(p) for k in shapes)]


def _sub_table(shapes: Shapes, dtypes: dict[str, str], prefix: str) -> tuple[Shapes, dict[str, str]]:
    """The shapes and dtypes of the keys under `prefix`, the prefix removed."""
    keys = [k for k in shapes if k.startswith(prefix)]
    return {k[len(prefix):]: shapes[k] for k in keys}, {k[len(prefix):]: dtypes[k] for k in keys}


def held_parts(shapes: Shapes, dtypes: dict[str, str]) -> dict[str, str]:
    """{role: key prefix} of the text encoders and VAE a checkpoint holds beside its transformer (roles:
    "clip_l", "t5xxl", "qwen3", "qwen25vl", "vae"), each told apart by its own tensors as a standalone file is."""
    held: dict[str, str] = {}
    for prefix in _bundle_prefixes(shapes):
        sub = classify(*_sub_table(shapes, dtypes, prefix))
        role = PART_ROLES.get(sub.kind or "")  # SD3's CLIP-G has CLIP-L's names: the one ComfyUI calls clip_l wins
        if role is not None and (role not in held or prefix.startswith(f"{COMFY_TEXT}{role}.")):
            held[role] = prefix + sub.prefix
    return {role: held[role] for role in PART_ROLES.values() if role in held}


def inspect_part(path: Path, kind: str) -> FluxFile:
    """What the part of `kind` ("qwen3", "flux-vae", ...) in the file at `path` is: in an all-in-one checkpoint
    that holds one, the part's own tensors (its prefix the whole one); else the file itself (inspect_flux_file)."""
    shapes, dtypes, container = read_tensor_table(path)
    for prefix in _bundle_prefixes(shapes):
        sub = classify(*_sub_table(shapes, dtypes, prefix), container)
        if sub.kind == kind:
            return replace(sub, prefix=prefix + sub.prefix)
    return classify(shapes, dtypes, container)


def classify(shapes: Shapes, dtypes: dict[str, str], container: str = "safetensors") -> FluxFile:
    """What a file with these tensor shapes and dtypes is (see FluxFile)."""
    info = _classify(shapes, dtypes, container)
    return replace(info, scaled=any(is_side_tensor(k) for k in shapes if k.startswith(info.prefix)))


def _classify(shapes: Shapes, dtypes: dict[str, str], container: str) -> FluxFile:
    """classify's answer, but for `scaled`."""
    names = list(shapes)
    dominant = _dominant(dtypes, shapes, names)
    held = held_parts(shapes, dtypes)
    # 1. a transformer in BFL layout, bare or under ComfyUI's prefix; with text encoders + VAE: all-in-one
    for prefix, layout in (("", "bfl"), (COMFY_TRANSFORMER, "comfy")):
        if all(prefix + m in shapes for m in BFL_MARKS):
            facts = _transformer_facts(shapes, prefix)
            parts = ("transformer", *held)
            kind = "flux-all-in-one" if len(parts) > 1 else "flux-transformer"
            own = [n for n in names if n.startswith(prefix)] if prefix else names
            return FluxFile(kind, layout, _dominant(dtypes, shapes, own), container, prefix, parts=parts,
                            vae_prefix=held.get("vae"), **facts)  # type: ignore[arg-type]
    # 1b. another family's transformer under ComfyUI's prefix with its text encoder and VAE: all-in-one
    if held and any(k.startswith(COMFY_TRANSFORMER) for k in names):
        own = [n for n in names if n.startswith(COMFY_TRANSFORMER)]
        return FluxFile("all-in-one", "comfy", _dominant(dtypes, shapes, own), container, COMFY_TRANSFORMER,
                        parts=("transformer", *held), vae_prefix=held.get("vae"))
    # 2. a diffusers transformer, maybe saved under "transformer."
    for prefix in ("", DIFFUSERS_TRANSFORMER):
        if all(prefix + m in shapes for m in DIFFUSERS_MARKS):
            facts = _diffusers_facts(shapes, prefix)
            return FluxFile("flux-transformer", "diffusers", dominant, container, prefix, parts=("transformer",),
                            **facts)  # type: ignore[arg-type]
    # 3. text encoders: transformers state dicts, maybe prefixed; GGUFs in llama.cpp's names (models.gguf_text)
    if (gguf := _llama_cpp_encoder(shapes)) is not None:
        return FluxFile(gguf[0], "llama.cpp", dominant, container, "", width=gguf[1])
    if (prefix := _prefix_of(shapes, T5_MARK)) is not None:
        width = shapes[prefix + T5_MARK][1]
        return FluxFile("t5xxl", "transformers", dominant, container, prefix, width=int(width))
    if (prefix := _prefix_of(shapes, CLIP_MARK)) is not None:
        width = shapes[prefix + CLIP_MARK][1]
        return FluxFile("clip-l", "transformers", dominant, container, prefix.removesuffix("text_model."),
                        width=int(width))
    if (qwen := _prefix_of(shapes, QWEN3_MARK)) is not None and qwen + QWEN_EMBED in shapes:
        width = shapes[qwen + QWEN_EMBED][1]
        return FluxFile("qwen3", "transformers", dominant, container, qwen, width=int(width))
    if (qwen := _prefix_of(shapes, QWEN25_MARK)) is not None and _prefix_of(shapes, QWEN25_VISION) is not None:
        embed = shapes.get(qwen + QWEN_EMBED)
        return FluxFile("qwen2.5-vl", "transformers", dominant, container, "", width=int(embed[1]) if embed else None)
    if ((mistral := _prefix_of(shapes, MISTRAL_MARK)) is not None and mistral + QWEN_EMBED in shapes
            and mistral + QWEN25_MARK not in shapes):
        width = shapes[mistral + QWEN_EMBED][1]
        return FluxFile("mistral3", "transformers", dominant, container, mistral, width=int(width))
    # 4. Qwen-Image's video VAE (3-D convolutions) in diffusers' or Wan 2.1's original names, bare or under "vae."
    for prefix in ("", COMFY_VAE):
        for layout, mark in (("diffusers", "encoder.conv_in.weight"), ("wan", "encoder.conv1.weight")):
            if len(shapes.get(prefix + mark, ())) == 5:
                return FluxFile("qwen-vae", layout, dominant, container, prefix)
    # 5. Flux.2's VAE in diffusers' names: 32 latent channels and its batch-norm statistics (bn.*)
    for prefix in ("", COMFY_VAE):
        found = _vae_layout(shapes, prefix)
        if found and found[1] == FLUX2_LATENT_CHANNELS and prefix + "bn.running_mean" in shapes:
            return FluxFile("flux2-vae", found[0], dominant, container, prefix, width=found[2])
    # 6. a VAE with Flux's 16 latent channels (an SD VAE has 4), bare or prefixed
    for prefix in ("", COMFY_VAE, LDM_VAE):
        found = _vae_layout(shapes, prefix)
        if found and found[1] == FLUX_LATENT_CHANNELS:
            return FluxFile("flux-vae", found[0], dominant, container, prefix, width=found[2])
    return FluxFile(None, None, dominant, container)


def inspect_flux_file(path: Path) -> FluxFile:
    """What the Flux-related file at `path` (.safetensors or .gguf) holds, from its header only."""
    shapes, dtypes, container = read_tensor_table(path)
    return classify(shapes, dtypes, container)

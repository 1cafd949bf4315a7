"""ComfyUI: the API `prompt` graph (what ran) or, without it, the UI `workflow`, read into one sdcli job.

Hand-written: sd-parsers needs both chunks and follows the UI's links (an API-only image, or a
UI-only one, reads as nothing), and replay needs each standard node by its role. The graph is
walked back from the sampler: model chain (loaders, LoRAs, ModelSampling*), conditioning
(CLIPTextEncode, FluxGuidance, CLIPSetLastLayer; ConditioningZeroOut on the negative: --zero-negative), latent
(EmptyLatentImage and its SD3/Flux2 forms, VAEEncode+LoadImage: the input's file name, found by replay);
ReferenceLatent on the conditioning: an edit (sdcli edit) of the reference images it chains (edits.py), as are
TextEncodeQwenImageEdit(Plus)'s images (--comfy-edit: sized as those nodes size them);
ModelSamplingAuraFlow/SD3 are --model-sampling with their --shift (the model's sigmas replaced, as ComfyUI does);
CFGNorm is --cfg-norm.
Any other node is listed in `unmapped`, and replay refuses the image naming them.
"""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.common import BrokenMetadata, Found, clean, load_json, size, with_loras
from sdcli.io.sources.edits import ANNOTATION, QWEN_ENCODERS, References
from sdcli.io.sources.names import comfy_sampler

SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
# Node class -> its widgets in the UI workflow's widgets_values order ("": a widget that is no input,
# as control_after_generate). Every node sdcli maps to a job is a row; the rest are unmapped.
WIDGETS: dict[str, tuple[str, ...]] = {
    "KSampler": ("seed", "", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", "", "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed", "", "cfg"),
    "SamplerCustomAdvanced": (),
    "RandomNoise": ("noise_seed", ""),
    "BasicGuider": (),
    "CFGGuider": ("cfg",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "Flux2Scheduler": ("steps", "width", "height"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "CLIPLoader": ("clip_name", "type"),
    "DualCLIPLoader": ("clip_name1", "clip_name2", "type"),
    "TripleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3"),
    "VAELoader": ("vae_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "CLIPTextEncode": ("text",),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "T5TokenizerOptions": ("min_padding", "min_length"),
    "FluxGuidance": ("guidance",),
    "ModelSamplingFlux": ("max_shift", "base_shift", "width", "height"),
    "ModelSamplingSD3": ("shift",),
    "ModelSamplingAuraFlow": ("shift",),
    "CFGNorm": ("strength",),
    "ConditioningZeroOut": (),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "EmptyFlux2LatentImage": ("width", "height", "batch_size"),
    "LoadImage": ("image", ""),
    "LoadImageOutput": ("image", "", "", ""),
    "ImageStitch": ("direction", "match_image_size", "spacing_width", "spacing_color"),
    "FluxKontextImageScale": (),
    "ReferenceLatent": (),
    "ImageScaleToTotalPixels": ("upscale_method", "megapixels", "resolution_steps"),
    "GetImageSize": (),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "VAEEncode": (),
    "VAEDecode": (),
    "SaveImage": ("filename_prefix",),
    "PreviewImage": (),
}
UI_ONLY = ("Note", "MarkdownNote", "PrimitiveNode", "Reroute")  # the UI's own nodes: never in what ran
# ComfyUI's ModelSampling nodes of flow models -> sdcli's --model-sampling (request.vocabulary.MODEL_SAMPLINGS)
MODEL_SAMPLING_NODES = {"ModelSamplingAuraFlow": "AuraFlow", "ModelSamplingSD3": "SD3"}
EMPTY_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyFlux2LatentImage")
FLUX_SHIFT_INPUTS, FLUX_SHIFT_DEFAULTS = ("max_shift", "base_shift", "width", "height"), (1.15, 0.5, 1024, 1024)
NOTES = ("ComfyUI draws its samplers' fresh noise (ancestral samplers) on the device it ran on, seeded seed + 1 "
         "on a CPU and seed on a GPU, as --rng comfy does: such an image replays exactly on the same kind of device",)


def read(chunks: dict[str, Any]) -> Found | None:
    """A ComfyUI image's job; None when it has neither chunk."""
    if "prompt" in chunks:
        graph = load_json(chunks["prompt"], "ComfyUI prompt chunk")
        where = "ComfyUI prompt graph"
    elif "workflow" in chunks:
        graph = api_from_workflow(load_json(chunks["workflow"], "ComfyUI workflow chunk"))
        where = "ComfyUI workflow"
    else:
        return None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) for n in graph.values()):
        raise BrokenMetadata(f"its {where} is not a graph of nodes")
    return _Walk({str(k): v for k, v in graph.items()}, where).found()


def api_from_workflow(workflow: Any) -> dict[str, Any]:
    """The UI workflow as an API graph: each mapped node's widgets named (WIDGETS), links as [node, slot]."""
    try:
        links = {link[0]: (str(link[1]), link[2], link[5] if len(link) > 5 else None)
                 for link in workflow.get("links") or []}
        nodes = {str(n["id"]): n for n in workflow["nodes"]}
    except (AttributeError, KeyError, TypeError, IndexError):
        raise BrokenMetadata("its ComfyUI workflow has no readable nodes and links") from None
    graph: dict[str, Any] = {}
    for node_id, node in nodes.items():
        kind = node.get("type")
        if kind in UI_ONLY or node.get("mode") in (2, 4):  # muted or bypassed: did not run
            continue
        values = node.get("widgets_values") or []
        names = WIDGETS.get(kind, ())
        if isinstance(values, list) and len(values) < len(names):  # saved without the UI-only widgets
            names = tuple(n for n in names if n)
        inputs = dict(values) if isinstance(values, dict) else {
            name: value for name, value in zip(names, values, strict=False) if name}
        for slot in node.get("inputs") or []:
            link = _through(links, nodes, links.get(slot.get("link")))
            source = nodes.get(link[0], {}) if link is not None else {}
            if source.get("type") == "PrimitiveNode" and source.get("widgets_values"):  # the UI's value widget
                inputs[slot.get("name")] = source["widgets_values"][0]
            elif link is not None:
                inputs[slot.get("name")] = list(link[:2])
        graph[node_id] = {"class_type": kind, "inputs": inputs}
    return graph


def _through(links: dict[Any, Any], nodes: dict[str, Any], link: Any) -> Any:
    """A UI link followed through Reroutes and bypassed nodes (mode 4: their input of the link's type passes on)."""
    for _ in range(len(nodes) + 1):  # a cycle of reroutes ends here
        node = nodes.get(link[0]) if link is not None else None
        if node is None or (node.get("type") != "Reroute" and node.get("mode") != 4):
            return link
        slots = node.get("inputs") or [{}]
        typed = [i for i in slots if i.get("type") == link[2]]
        if node.get("type") == "Reroute":
            typed = typed or slots[:1]
        link = links.get(typed[0].get("link")) if typed else None
    return None


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class _Walk:
    """The graph walked back from its sampler: the WebUI's keys, the LoRAs, what does not map."""

    def __init__(self, graph: dict[str, Any], where: str):
        self.graph, self.where = graph, where
        self.params: dict[str, Any] = {}
        self.loras: list[tuple[str, float]] = []
        self.notes: list[str] = []
        self.unmapped: list[str] = []
        self.input_image: str | None = None  # LoadImage's file name (img2img)
        self.started: str | None = None  # a KSamplerAdvanced's later start, in words
        self.schedule_sides: list[Any] = []  # a Flux2Scheduler's width and height (sdcli: the image's)
        self.references = References(self)  # an edit's reference images (ReferenceLatent)

    def node(self, link: Any, role: str) -> dict[str, Any]:
        """The node a link points to; BrokenMetadata naming the link when it is not in the graph."""
        node = self.graph.get(str(link[0])) if _is_link(link) else None
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            target = link[0] if _is_link(link) else repr(link)
            raise BrokenMetadata(f"its {self.where} links {role} to node {target}, which is not in the graph")
        return node

    def value(self, node: dict[str, Any], name: str, default: Any = None) -> Any:
        """A widget's value; a linked one read from its source node's single value (a primitive node)."""
        value = node.get("inputs", {}).get(name, default)
        if _is_link(value):
            literals = [v for v in self.node(value, name).get("inputs", {}).values() if not _is_link(v)]
            value = literals[0] if len(literals) == 1 else default
        return value

    def found(self) -> Found:
        # 1. The sampler: the one whose result no other sampler takes on (a second pass's).
        samplers = [i for i, n in self.graph.items() if n.get("class_type") in SAMPLER_NODES
                    or {"sampler_name", "steps", "cfg"} <= set(n.get("inputs") or {})]
        if not samplers:
            raise BrokenMetadata(f"its {self.where} has no sampler node")
        fed = {str(v[0]) for i in samplers for v in (self.graph[i]["inputs"].get("latent_image"),) if _is_link(v)}
        last = [i for i in samplers if i not in fed] or samplers
        sampler = self.graph[sorted(last, key=lambda i: (len(i), i))[-1]]
        if len(samplers) > 1:
            self.unmapped.append(f"{len(samplers)} sampler nodes (sdcli maps one; the last one's settings shown)")
        # 2. Its settings, the model, the prompts (SamplerCustomAdvanced: on its guider), the latent.
        self.sampler(sampler)
        holder = sampler["inputs"]
        if sampler.get("class_type") == "SamplerCustomAdvanced" and _is_link(holder.get("guider")):
            holder = dict(self.node(holder["guider"], "guider").get("inputs", {}))
            holder.setdefault("positive", holder.get("conditioning"))
        self.model(holder.get("model"))
        prompt = self.conditioning(holder.get("positive"), "positive")
        negative = self.conditioning(holder.get("negative"), "negative")
        self.references.check(self.params.get("CFG scale"))
        self.latent(sampler["inputs"].get("latent_image"), self.params.pop("_denoise", 1.0))
        self.vae()
        # 3. Nodes sdcli does not map, anywhere in the graph.
        other = sorted({str(n.get("class_type")) for n in self.graph.values()} - set(WIDGETS))
        if other:
            self.unmapped.insert(0, "nodes " + ", ".join(other))
        notes = [*self.notes, NOTES[0]]
        self.params.update({"RNG": "Comfy", "Emphasis": "Comfy"})  # ComfyUI's noise and prompt weights
        return Found("ComfyUI", with_loras(prompt, self.loras), negative, clean(self.params),
                     {"prompt": self.graph}, tuple(notes), tuple(self.unmapped), self.input_image,
                     self.references.names())

    def sampler(self, node: dict[str, Any]) -> None:
        """Seed, steps, CFG, sampler and scheduler (SamplerCustom: from its KSamplerSelect/BasicScheduler)."""
        kind, get = node.get("class_type"), lambda name, d=None: self.value(node, name, d)
        name, scheduler, steps, denoise = get("sampler_name"), get("scheduler"), get("steps"), get("denoise", 1.0)
        seed, cfg, raw = get("seed", get("noise_seed")), get("cfg"), node.get("inputs", {})  # raw: links as links
        if kind == "SamplerCustomAdvanced":  # RandomNoise, a guider (BasicGuider: CFG 1), KSamplerSelect, sigmas
            if _is_link(raw.get("noise")):
                seed = self.value(self.node(raw["noise"], "noise"), "noise_seed")
            if _is_link(raw.get("guider")):
                cfg = self.value(self.node(raw["guider"], "guider"), "cfg", 1.0)
        if kind in ("SamplerCustom", "SamplerCustomAdvanced"):
            if _is_link(raw.get("sampler")):
                name = self.value(self.node(raw["sampler"], "sampler"), "sampler_name")
            if _is_link(raw.get("sigmas")):
                sigmas = self.node(raw["sigmas"], "sigmas")
                if sigmas.get("class_type") == "BasicScheduler":
                    scheduler, steps = self.value(sigmas, "scheduler"), self.value(sigmas, "steps")
                    denoise = self.value(sigmas, "denoise", 1.0)
                elif sigmas.get("class_type") == "Flux2Scheduler":  # Flux.2's own: sdcli's Flux2 schedule type
                    scheduler, steps = "Flux2Scheduler", self.value(sigmas, "steps")
                    self.schedule_sides = [sigmas["inputs"].get(side) for side in ("width", "height")]
        if kind == "KSamplerAdvanced":
            start, end = get("start_at_step", 0), get("end_at_step", 10000)
            if isinstance(end, int) and isinstance(steps, int) and end < steps:
                self.unmapped.append(f"KSamplerAdvanced running steps {start}-{end} of {steps}")
            elif start and isinstance(start, int) and isinstance(steps, int) and 0 < start < steps:
                # Steps start..N of an N-step schedule: KSampler's rule (the last `steps` + 1 sigmas of
                # int(steps / denoise)) gives the same sigmas with steps N - start at this denoise.
                self.started = f"KSamplerAdvanced from step {start} of {steps}"
                steps, denoise = steps - start, (steps - start) / (steps + 0.5)
            elif start:
                self.unmapped.append(f"KSamplerAdvanced starting at step {start} of {steps}")
        if get("add_noise", "enable") in ("disable", False):
            self.unmapped.append("a sampler with add_noise disabled")
        names, unmapped = comfy_sampler(name, scheduler)
        self.unmapped += unmapped
        self.params.update({"Steps": steps, **names, "CFG scale": cfg, "Seed": seed, "_denoise": denoise})

    def model(self, link: Any) -> None:
        """Loaders, LoRAs and ModelSampling nodes back along the model link."""
        while _is_link(link):
            node = self.node(link, "model")
            kind, get = node.get("class_type"), lambda name, d=None, n=node: self.value(n, name, d)
            if kind in ("LoraLoader", "LoraLoaderModelOnly"):
                self.loras.insert(0, (str(get("lora_name")), float(get("strength_model", 1.0))))
                if kind == "LoraLoader" and get("strength_clip", 1.0) != get("strength_model", 1.0):
                    self.notes.append(f"LoRA {get('lora_name')}: ComfyUI's strength_clip {get('strength_clip')} "
                                      f"differs from its strength_model; sdcli applies one weight to both")
            elif kind in (*MODEL_SAMPLING_NODES, "ModelSamplingFlux") and "Shift" in self.params:
                pass  # a model sampling patched again nearer the sampler, which is the one that runs
            elif kind in MODEL_SAMPLING_NODES:  # the model's sigmas replaced: ComfyUI's discrete flow table
                self.params["Shift"], self.params["Model sampling"] = get("shift"), MODEL_SAMPLING_NODES[kind]
            elif kind == "ModelSamplingFlux":
                self.params["Shift"] = flux_shift(*(get(k, d) for k, d in zip(FLUX_SHIFT_INPUTS, FLUX_SHIFT_DEFAULTS,
                                                                               strict=True)))
            elif kind == "CFGNorm":  # a post-CFG function: --cfg-norm (ComfyUI applies each one; sdcli maps one)
                if "CFG norm" in self.params:
                    self.unmapped.append("two CFGNorm nodes")
                self.params["CFG norm"] = get("strength", 1.0)
            elif kind in ("CheckpointLoaderSimple", "UNETLoader"):
                self.params["Model"] = _stem(get("ckpt_name", get("unet_name")))
                return
            link = node.get("inputs", {}).get("model")

    def conditioning(self, link: Any, role: str) -> str:
        """The prompt text behind a conditioning link (FluxGuidance: the distilled CFG scale on the way)."""
        while _is_link(link):
            node = self.node(link, role)
            kind = node.get("class_type")
            if kind == "FluxGuidance":
                self.params["Distilled CFG Scale"] = self.value(node, "guidance")
                link = node["inputs"].get("conditioning")
            elif kind == "ConditioningZeroOut":  # zeros shaped as its input's states (sdcli: the negative's only)
                if role != "negative":
                    self.unmapped.append(f"a ConditioningZeroOut on the {role} conditioning")
                self.params["Zero negative"] = "True"
                link = node["inputs"].get("conditioning")
            elif kind == "ReferenceLatent":  # a reference appended to the conditioning's list: walked back, first
                self.references.add(role, node["inputs"].get("latent"))
                link = node["inputs"].get("conditioning")
            elif kind in ("CLIPTextEncode", *QWEN_ENCODERS):  # Qwen-Image-Edit's: its images an edit's references
                if kind in QWEN_ENCODERS and self.references.add_encoder(role, node):
                    self.params["Comfy edit"] = "True"
                self.clip(node["inputs"].get("clip"))
                text = self.value(node, "text" if kind == "CLIPTextEncode" else "prompt", "")
                return text if isinstance(text, str) else str(text)
            else:
                return ""
        return ""

    def clip(self, link: Any) -> None:
        """Clip skip (CLIPSetLastLayer: -2 is the WebUI's Clip skip 2) back along the CLIP link; T5TokenizerOptions
        only where it changes nothing: on Chroma's T5 (a CLIPLoader of type chroma, unpadded: min_length 1) with no
        padding and a min_length of 0 or 1, as Chroma's template sets it."""
        options, node = None, {}
        while _is_link(link):
            node = self.node(link, "clip")
            kind = node.get("class_type")
            if kind == "CLIPSetLastLayer":
                self.params["Clip skip"] = -int(self.value(node, "stop_at_clip_layer", -1))
            elif kind == "T5TokenizerOptions":
                options = (self.value(node, "min_padding", 0), self.value(node, "min_length", 0))
            link = node.get("inputs", {}).get("clip")
        loader = node.get("inputs", {}).get("type") if node.get("class_type") == "CLIPLoader" else None
        if options is not None and not (loader == "chroma" and options[0] == 0 and options[1] in (0, 1)):
            what = (f"T5TokenizerOptions min_padding {options[0]}, min_length {options[1]} (sdcli maps only Chroma's "
                    "own: 0, and 0 or 1)")
            if what not in self.unmapped:
                self.unmapped.append(what)

    def vae(self) -> None:
        """A VAE file the decoder loads (VAELoader), as the WebUI's `VAE` key."""
        for node in self.graph.values():
            link = node.get("inputs", {}).get("vae") if node.get("class_type") == "VAEDecode" else None
            if _is_link(link) and (loader := self.node(link, "vae")).get("class_type") == "VAELoader":
                self.params["VAE"] = self.value(loader, "vae_name")

    def scheduled_as(self, latent: dict[str, Any]) -> bool:
        """Whether the Flux2Scheduler's width and height are the empty latent's: the same links, or equal values."""
        return all(theirs == latent["inputs"].get(name) or self.value({"inputs": {name: theirs}}, name)
                   == self.value(latent, name) for name, theirs in zip(("width", "height"), self.schedule_sides,
                                                                       strict=True))

    def latent(self, link: Any, denoise: Any) -> None:
        """Size from EmptyLatentImage; an img2img (VAEEncode of a LoadImage) and its denoise."""
        if not _is_link(link):
            return
        node = self.node(link, "latent_image")
        kind = node.get("class_type")
        if kind in EMPTY_LATENTS:
            sides = [node["inputs"].get(side) for side in ("width", "height")]
            if self.schedule_sides and not self.scheduled_as(node):
                self.unmapped.append("a Flux2Scheduler sized otherwise than its empty latent (sdcli sizes the "
                                     "schedule by the image)")
            if any(_is_link(side) and self.node(side, side).get("class_type") == "GetImageSize" for side in sides):
                if not all(_is_link(side) and self.references.sized_by_first(side) for side in sides):
                    self.unmapped.append("an empty latent sized by GetImageSize of another image than the first "
                                         "reference's scaled one (sdcli's edit is at that size)")
            else:  # GetImageSize of the first reference's scaled image: its size, the edit's default
                self.params["Size"] = size(self.value(node, "width"), self.value(node, "height"))
            if self.started:
                self.unmapped.append(f"{self.started} on an empty latent")
            elif denoise not in (None, 1, 1.0):
                self.unmapped.append(f"denoise {denoise} on an empty latent")
        elif kind == "VAEEncode" and self.references.starts(link, denoise):
            return  # the edit's first reference encoded: no more than its size, which the edit's default is
        elif kind == "VAEEncode":
            self.params["Denoising strength"] = denoise
            pixels = node["inputs"].get("pixels")
            loader = self.node(pixels, "pixels") if _is_link(pixels) else None
            name = self.value(loader, "image") if loader and loader.get("class_type") == "LoadImage" else None
            if isinstance(name, str) and name:
                self.input_image = ANNOTATION.sub("", name)  # "photo.png [input]": the UI's folder tag
                if self.started:
                    self.notes.append(f"{self.started}: replayed as --steps {self.params['Steps']} --strength "
                                      f"{denoise:g}, which walks the same sigmas (ComfyUI's KSampler rule)")
            else:
                self.unmapped.append("a VAEEncode whose pixels are not a LoadImage's file")


def flux_shift(max_shift: Any, base_shift: Any, width: Any, height: Any) -> str | None:
    """ModelSamplingFlux's shift (Flux's mu, sdcli's --shift): on the line through (256, base_shift) and
    (4096, max_shift) at the node's width x height / 256 image tokens (1.15 at 1024x1024 with its defaults);
    12 digits, so the replayed sigmas are ComfyUI's. None when an input is not a number."""
    try:
        slope = (float(max_shift) - float(base_shift)) / (4096 - 256)
        tokens = float(width) * float(height) / (8 * 8 * 2 * 2)
        return f"{tokens * slope + (float(base_shift) - slope * 256):.12g}"
    except (TypeError, ValueError):
        return None


def _stem(name: Any) -> str | None:
    """A model file's name without folders and extension, as the WebUI's `Model` key."""
    if not isinstance(name, str):
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base

"""A ComfyUI edit graph's reference images: ReferenceLatent nodes on the conditioning, each latent a VAEEncode of a
loaded image, read as an sdcli edit (`sdcli edit -i REF ...`) of those files.

ComfyUI's ReferenceLatent (comfy_extras/nodes_edit_model.py) appends the latent to the conditioning's list of
reference latents; sdcli's edit gives its references to the positive and the negative conditioning alike, which
the walk checks (at CFG 1 the negative is not run). FluxKontextImageScale (comfy_extras/nodes_flux.py) fits the
image to the trained Kontext size nearest its aspect ratio, as sdcli's Flux.1 Kontext sizes a reference
(families.kontext.kontext_size); a reference encoded at its own size is refused, sdcli resizing it. The sampler's
latent may be the first reference's VAEEncode at denoise 1: only its size counts there (the first sigma is 1),
and that is the edit's default size. Pure: no torch.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

# Image nodes a reference passes through on its way from the file to VAEEncode: what each is to sdcli's edit.
LOADERS = ("LoadImage", "LoadImageOutput")  # a file from ComfyUI's input/ (or output/) folder
SCALE = "FluxKontextImageScale"
TOTAL = "ImageScaleToTotalPixels"  # Flux.2's templates: --reference-scale with its widgets
# Qwen-Image-Edit's text encoder nodes (comfy_extras/nodes_qwen.py) and their image inputs: each image, with the
# node's VAE, a reference latent the node sizes itself (sdcli: --comfy-edit, Family.comfy_edit_inputs).
QWEN_ENCODERS = {"TextEncodeQwenImageEdit": ("image",), "TextEncodeQwenImageEditPlus": ("image1", "image2", "image3")}
ANNOTATION = re.compile(r" \[(input|output|temp)\]$")  # the folder tag the UI appends to an image name


class _Walk(Protocol):
    unmapped: list[str]
    notes: list[str]

    def node(self, link: Any, role: str) -> dict[str, Any]: ...

    def value(self, node: dict[str, Any], name: str, default: Any = None) -> Any: ...


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class References:
    """The reference images of the positive and negative conditionings: file names in the model's order, and the
    VAEEncode node of each."""

    def __init__(self, walk: _Walk):
        self.walk = walk
        self.files: dict[str, list[str]] = {"positive": [], "negative": []}
        self.encoders: dict[str, list[str]] = {"positive": [], "negative": []}
        self.loaders: dict[str, list[str]] = {"positive": [], "negative": []}  # a Qwen encoder's LoadImage nodes
        self.latents = 0  # ReferenceLatent nodes met
        self.scales: dict[str, str] = {}  # ImageScaleToTotalPixels node id -> its widgets ("METHOD MP STEPS")
        self.kinds: set[str | None] = set()  # the nodes that sized the ReferenceLatents' images
        self.first_pixels: Any = None  # the first positive reference's pixels link (a GetImageSize's may be it)

    def _unmapped(self, what: str) -> None:
        if what not in self.walk.unmapped:
            self.walk.unmapped.append(what)

    def add(self, role: str, link: Any) -> None:
        """A ReferenceLatent's latent (met walking back from the sampler: it goes before those already met)."""
        self.latents += 1
        if not _is_link(link):
            return self._unmapped("a ReferenceLatent without a latent")
        encode = self.walk.node(link, "latent")
        if encode.get("class_type") != "VAEEncode":
            return self._unmapped(f"a ReferenceLatent of a {encode.get('class_type')} (sdcli maps a VAEEncode's)")
        name, scaled = self._image(encode["inputs"].get("pixels"))
        if name is None:
            return None
        note = (f"{SCALE}: sdcli's Flux.1 Kontext fits a reference to the same trained size (the released model; "
                "a smaller one keeps the image's own size in whole tokens)")
        self.kinds.add(scaled)
        if scaled == SCALE and note not in self.walk.notes:
            self.walk.notes.append(note)
        if not scaled:
            self._unmapped(f"a reference image {name!r} encoded at its own size (sdcli maps {SCALE}'s sizing, "
                           f"as its Flux.1 Kontext edit sizes a reference, and {TOTAL}'s, as --reference-scale)")
        if role == "positive":
            self.first_pixels = encode["inputs"].get("pixels")
        self.files.setdefault(role, []).insert(0, name)
        self.encoders.setdefault(role, []).insert(0, str(link[0]))
        return None

    def add_encoder(self, role: str, node: dict[str, Any]) -> bool:
        """A Qwen-Image-Edit text encoder node's images (the start of its conditioning's reference list): files in
        the node's input order, each straight from a LoadImage (the node sizes it), with the node's VAE. Whether
        it has any (TextEncodeQwenImageEdit without one is Qwen-Image's text encoding; ...Plus's is not)."""
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        links = [inputs.get(name) for name in QWEN_ENCODERS.get(str(kind), ()) if _is_link(inputs.get(name))]
        if not links and kind == "TextEncodeQwenImageEditPlus":
            self._unmapped(f"a {kind} without images (its edit template around the text alone)")
        if links and not _is_link(inputs.get("vae")):
            self._unmapped(f"a {kind} without a VAE (its images seen by the text encoder alone)")
        names, loaders = [], []
        for link in links:
            name, scaled = self._image(link)
            if name is None:
                continue
            if scaled:
                self._unmapped(f"a {kind} image sized by {scaled} (the node sizes its images itself)")
            names.append(name)
            loaders.append(str(self._loader(link)))
        self.files.setdefault(role, [])[0:0] = names
        self.loaders.setdefault(role, [])[0:0] = loaders
        return bool(links)

    def _loader(self, link: Any) -> Any:
        """The node id of the loader an image link comes from (through a one-image ImageStitch)."""
        while self.walk.node(link, "pixels").get("class_type") not in LOADERS:
            node = self.walk.node(link, "pixels")
            link = node["inputs"].get("image1", node["inputs"].get("image"))
        return link[0]

    @property
    def comfy(self) -> bool:
        """Whether a Qwen-Image-Edit text encoder node sized the references (--comfy-edit)."""
        return bool(self.loaders["positive"] or self.loaders["negative"])

    def _image(self, link: Any) -> tuple[str | None, str | None]:
        """The file behind an image link, and the node that sized it (FluxKontextImageScale or
        ImageScaleToTotalPixels, whose widgets become --reference-scale), if one did."""
        scaled = None
        while _is_link(link):
            node = self.walk.node(link, "pixels")
            kind = node.get("class_type")
            if kind in (SCALE, TOTAL) and scaled is None:
                if kind == TOTAL:
                    self._total(str(link[0]), node)
                scaled, link = kind, node["inputs"].get("image")
            elif kind == "ImageStitch" and not _is_link(node["inputs"].get("image2")):
                link = node["inputs"].get("image1")  # one image stitched to nothing: that image
            elif kind in LOADERS:
                name = self.walk.value(node, "image")
                if isinstance(name, str) and name:
                    return ANNOTATION.sub("", name), scaled
                break
            else:
                self._unmapped(f"a reference image made by {kind} (sdcli maps a LoadImage, {SCALE} or {TOTAL}, and a "
                               "one-image ImageStitch)")
                return None, scaled
        self._unmapped("a reference image that is not a LoadImage's file")
        return None, scaled

    def _total(self, node_id: str, node: dict[str, Any]) -> None:
        """An ImageScaleToTotalPixels before a reference: its widgets as --reference-scale (one for all)."""
        get = self.walk.value
        spec = (f"{get(node, 'upscale_method', 'nearest-exact')} {get(node, 'megapixels', 1.0):g} "
                f"{get(node, 'resolution_steps', 1)}")
        self.scales[node_id] = spec
        if len(set(self.scales.values())) > 1:
            settings = ", ".join(sorted(set(self.scales.values())))
            self._unmapped(f"references scaled by {TOTAL} nodes of different settings ({settings})")
        self.walk.params["Reference scale"] = spec

    def sized_by_first(self, link: Any) -> bool:
        """Whether a GetImageSize link measures the first reference's scaled image (the edit's default size)."""
        node = self.walk.node(link, "width")
        return node.get("class_type") == "GetImageSize" and node["inputs"].get("image") == self.first_pixels

    def check(self, cfg: Any) -> None:
        """sdcli's edit gives the negative the positive's references: where CFG runs the negative, they must be."""
        positive, negative = self.files["positive"], self.files["negative"]
        if {SCALE, TOTAL} <= self.kinds:
            self._unmapped(f"references sized by both {SCALE} and {TOTAL}")
        if self.comfy and self.latents:
            self._unmapped("a ReferenceLatent with a Qwen-Image-Edit text encoder node's references (sdcli sizes "
                           "one edit's references one way)")
        if negative and not positive:
            self._unmapped("reference latents on the negative conditioning only")
        elif positive and negative != positive and cfg not in (1, 1.0):
            self._unmapped(f"the negative conditioning's reference images ({', '.join(negative) or 'none'}) at CFG "
                           f"{cfg}, not the positive's (sdcli's edit gives both the positive's)")

    def starts(self, link: Any, denoise: Any) -> bool:
        """Whether the sampler's latent (a VAEEncode) is the edit's start: the first reference's encoding at
        denoise 1, which gives only its size. With references, any other VAEEncode latent is refused."""
        if not self.files["positive"]:
            return False
        if denoise in (1, 1.0) and self.comfy:  # the template's VAEEncode of the first image, unscaled
            pixels = self.walk.node(link, "latent_image")["inputs"].get("pixels")
            if _is_link(pixels) and str(pixels[0]) == self.loaders["positive"][0]:
                return True
        elif denoise in (1, 1.0) and str(link[0]) == self.encoders["positive"][0]:
            return True
        self._unmapped(f"an edit's sampler starting from a VAEEncode latent at denoise {denoise} (sdcli's edit "
                       "starts from noise at the first reference's size)")
        return True

    def names(self) -> tuple[str, ...]:
        return tuple(self.files["positive"])

"""A job's ControlNet units end to end: files and images checked before any model loads, the
models loaded next to the pipeline, then per run the control images at the generation size,
the hook for sdcli's loop (controlnet.hook) and the `ControlNet N` infotext keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.controlnet.units import ControlUnit, unit_infotext
from sdcli.errors import UsageError
from sdcli.families.base import Family


@dataclass(frozen=True)
class ControlPlan:
    """The units with their files found (controlnet.files.ControlFile) and control images read."""

    units: tuple[ControlUnit, ...]
    files: tuple[Any, ...]
    images: tuple[Any, ...]  # PIL RGB
    shapes: tuple[Any, ...]  # controlnet.files.ControlShape from each file's header (None: a pickle)
    own: ControlUnit | None = None  # the control image of a control model (no ControlNet model: Flux Control)
    own_image: Any = None  # its image, PIL RGB

    def check_model(self, family: Family) -> None:
        """Refuse, before the model loads, a ControlNet of the other family (SDXL vs SD 1.x/2.x)."""
        from sdcli.controlnet.files import check_family

        for file, shape in zip(self.files, self.shapes, strict=True):
            check_family(file, shape, family)

    def warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings()]

    def record_units(self) -> tuple[ControlUnit, ...]:
        """The units as replay needs them: absolute model and image paths."""
        units = tuple(replace(u, model=str(f.path), image=str(Path(u.image).absolute()), model_by_name=False)
                      for u, f in zip(self.units, self.files, strict=True))
        return units + (() if self.own is None else (replace(self.own, image=str(Path(self.own.image).absolute())),))

    def own_hint(self, size: tuple[int, int], crop: Any = None) -> Any:
        """The control model's control image at `size` as pixels [1, 3, H, W] in [-1, 1] (its preprocessor and
        resize mode applied, cropped as the ControlNet units' with `crop`)."""
        import torch

        hint, _ = fitted_hint(self.own, self.own_image, size, crop)
        return (2.0 * torch.from_numpy(hint) - 1.0).permute(2, 0, 1)[None]


def plan_controlnets(units: tuple[ControlUnit, ...], library: Any, allow_pickle: bool) -> ControlPlan | None:
    """Find and check each unit's model file and read its control image (no torch); None without units."""
    from sdcli.controlnet.files import find_controlnet, header_shape
    from sdcli.controlnet.preprocess import open_control_image

    if not units:
        return None
    own = next((u for u in units if not u.model), None)
    units = tuple(u for u in units if u.model)
    files = tuple(find_controlnet(u.model, library, allow_pickle, u.model_by_name) for u in units)
    images = tuple(open_control_image(u.image) for u in units)
    return ControlPlan(units, files, images, tuple(header_shape(f) for f in files), own,
                       None if own is None else open_control_image(own.image))


def fitted_hint(unit: ControlUnit, image: Any, size: tuple[int, int], crop: Any = None) -> tuple[Any, int]:
    """A unit's control image at `size` ([H, W, 3] in [0, 1]) and its Processor Res; `crop` (inpainting "only
    masked": the input's size, the crop box) crops it alike first, as the extension's inpaint_crop_input_image."""
    from sdcli.controlnet.preprocess import control_hint, fit

    if crop is not None:
        image = fit(fit(image, crop[0], unit.resize_mode).crop(crop[1]), size, "fill")
    return control_hint(unit, image, size)


@dataclass(frozen=True)
class LoadedControl:
    """The loaded ControlNets of a job."""

    plan: ControlPlan
    nets: tuple[Any, ...]

    def prepare(self, size: tuple[int, int], total_steps: int,
                crop: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None) -> tuple[Any, dict[str, str]]:
        """The hook for one run at `size` (width, height) and the infotext keys it adds. `crop`: inpainting
        "only masked" (the input's size, the crop box): each control image is cropped alike first, as the
        extension does (its inpaint_crop_input_image)."""
        import torch

        from sdcli.controlnet.hook import ControlHook, ControlModel

        models, params = [], {}
        for i, (unit, file, image, net) in enumerate(zip(self.plan.units, self.plan.files, self.plan.images,
                                                         self.nets, strict=True)):
            hint, resolution = fitted_hint(unit, image, size, crop)
            tensor = torch.from_numpy(hint).permute(2, 0, 1)[None].contiguous()
            mode = unit.control_mode
            models.append(ControlModel(net, tensor, unit.weight, unit.guidance_start, unit.guidance_end,
                                       soft=mode != "balanced", cond_only=mode == "controlnet"))
            params[f"ControlNet {i}"] = unit_infotext(unit, file.title, resolution)
        return ControlHook(models, total_steps), params


def check_loop(own: bool) -> None:
    """ControlNet runs in sdcli's own loop only."""
    if not own:
        raise UsageError("--controlnet: this model or sampler runs diffusers' pipeline, not sdcli's loop; "
                         "ControlNet needs an SD 1.x/2.x/SDXL model with a sampler of the loop")

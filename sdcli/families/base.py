"""What a model family is (Family), what the weights of one model say (Detected), and the
original (ldm/sgm) single-file key layout the Stable Diffusion families share. Pure Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Shapes = Mapping[str, Sequence[int]]

# Original (ldm/sgm) key prefixes of a WebUI single-file checkpoint.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
# Some SDXL fine-tunes trained for v-prediction mark it with an empty tensor of this name.
V_PRED_MARKER = "v_pred"


@dataclass(frozen=True)
class Family:
    """One model family: detection, pipelines per mode, native size, prediction default."""

    name: str
    label: str  # for people
    detect: Callable[[Shapes], bool]  # on original-layout single-file keys
    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class; a missing mode is not servable
    native_size: int
    prediction: str = "eps"  # "eps" or "v": the default when the weights cannot tell
    is_xl: bool = False  # two text encoders, pooled embeds, size/crop conditioning
    configs: str = ""  # bundled config folder (sdcli/models/configs/<name>)


def has_keys(*keys: str) -> Callable[[Shapes], bool]:
    return lambda shapes: all(k in shapes for k in keys)


@dataclass(frozen=True)
class Detected:
    """What the weights say: the family, the UNet's input channels (9 = inpainting), prediction type."""

    family: Family
    in_channels: int
    prediction: str
    prediction_guessed: bool  # True when the weights cannot tell and the family default was taken

    @property
    def inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def native_size(self) -> int:
        # SD 2.x eps checkpoints (512-base, 512-inpainting) are 512 px models; 768-v is 768 px.
        return 512 if self.family.name == "sd2" and self.prediction == "eps" else self.family.native_size

"""Stable Diffusion 2.x: OpenCLIP-H text encoder; 512-base (eps) and 768-v (v) share one architecture."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdcli.families.base import V_PRED_MARKER, Detected, Json, Shapes
from sdcli.families.sd1 import SD_CAPABILITIES, SD_LOAD_KWARGS, SD_PIPELINES, SD1Family

SD2_OPENCLIP = "cond_stage_model.model.token_embedding.weight"


class SD2Family(SD1Family):
    """SD 2.x (encoded as SD 1.x): eps or v cannot be told from the tensors; settled after loading, as the
    WebUI does."""

    def detect_folder(self, index: Json, unet: Json) -> bool:
        # OpenCLIP-H era UNets use linear attention projections
        return bool(unet.get("cross_attention_dim") and unet.get("use_linear_projection"))

    def guess_prediction(self, in_channels: int, shapes: Shapes) -> tuple[str, bool]:
        """512-base and 768-v have identical tensors. The header-only guess is v for ordinary
        SD 2.x files (2.0-v/2.1-v, the usual ones), settled after loading by the WebUI's UNet test
        (settle), and eps for 2.x inpainting (512-inpainting is eps). --prediction-type overrides."""
        if V_PRED_MARKER in shapes:
            return "v", False
        return ("eps" if in_channels == 9 else "v"), True

    def native_size_for(self, prediction: str) -> int:
        # SD 2.x eps checkpoints (512-base, 512-inpainting) are 512 px models; 768-v is 768 px.
        return 512 if prediction == "eps" else self.native_size

    def settle(self, pipe: Any, detected: Detected) -> Detected:
        """Without a declared prediction type: eps or v as the WebUI decides, by running the UNet.

        The WebUI's rule (sd_models_config.is_using_v_parameterization_for_sd2): latents and
        context all 0.5, timestep 999; a v model's output minus the input has a mean below -1.
        Run once on the loaded UNet (8x8 latents: well under a second on a GPU); the scheduler's
        prediction type and the native size follow. Inpainting files keep the eps guess, as there.
        """
        import torch

        if not detected.prediction_guessed or detected.inpainting:
            return detected
        unet = pipe.unet
        param = next(unet.parameters())
        x = torch.full((1, 4, 8, 8), 0.5, device=param.device, dtype=param.dtype)
        context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=param.device, dtype=param.dtype)
        with torch.no_grad():
            out = unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
        prediction = "v" if (out - x).float().mean().item() < -1 else "eps"
        settled = replace(detected, prediction=prediction, prediction_guessed=False)
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type="v_prediction" if prediction == "v" else "epsilon")
        if unet.config.sample_size * 8 == detected.native_size:  # bundled size followed the guess
            unet.register_to_config(sample_size=settled.native_size // 8)
        return settled


SD2 = SD2Family("sd2", "Stable Diffusion 2.x", SD_PIPELINES, 768, detect_keys=(SD2_OPENCLIP,), prediction="v",
                configs="sd2", capabilities=SD_CAPABILITIES, load_kwargs=SD_LOAD_KWARGS)

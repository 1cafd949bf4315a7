"""What the UNet families (SD 1.x, 2.x, XL) share: a diffusers UNet2DConditionModel as the network,
its sample size for the native image size, a discrete DDPM schedule with eps or v prediction.
Imported without torch; torch-side code is imported when a method runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sdcli.families.base import Control, Family, Json, ModuleAdapter, NetworkAdapter

if TYPE_CHECKING:
    from sdcli.conditioning.cond import Conditioning
    from sdcli.sampling.parameterisation import Parameterisation

LOOP_BETA_SCHEDULES = ("scaled_linear", "linear")  # what sampling.schedules.alphas_cumprod builds
LOOP_PREDICTIONS = ("epsilon", "v_prediction")
ADDED_EMBEDDINGS = (None, "text_time")  # SD 1.x/2.x: none; SDXL: pooled text + size/crop ids


class UNetAdapter(ModuleAdapter):
    """A diffusers UNet2DConditionModel as the loop's network: text states as encoder_hidden_states, the
    conditioning's extra kwargs (SDXL's added_cond_kwargs) and ControlNet residuals as keyword arguments."""

    def __call__(self, x: Any, t: Any, cond: Conditioning, control: Control | None = None) -> Any:
        extra = cond.extra if control is None else {**cond.extra, **control(x, t, cond)}
        return self.module(x, t, encoder_hidden_states=cond.crossattn, return_dict=False, **extra)[0]


class UNetFamily(Family):
    """A family whose pipelines carry their denoising network as `pipe.unet`."""

    network_component = "unet"
    ays: ClassVar[str] = "sd1"  # its Align Your Steps sigmas (sampling.schedules.AYS)

    def network(self, pipe: Any) -> NetworkAdapter:
        return UNetAdapter(pipe.unet)

    def runs_loop(self, pipe: Any, scheduler: Json, in_channels: int) -> bool:
        """sdcli's loop runs a UNet of known conditioning on a beta schedule it builds, eps or v."""
        return (self.capabilities.own_loop and in_channels in self.capabilities.loop_channels
                and pipe.unet.config.get("addition_embed_type") in ADDED_EMBEDDINGS
                and scheduler.get("beta_schedule", "scaled_linear") in LOOP_BETA_SCHEDULES
                and scheduler.get("prediction_type", "epsilon") in LOOP_PREDICTIONS)

    def parameterisation(self, scheduler: Json, prediction: str | None = None,
                         shift: float | None = None, sampling: str | None = None) -> Parameterisation:
        """Eps or v (`prediction`, --prediction-type, overrides the scheduler's) on the model's training
        sigmas (its alphas_cumprod); `shift` and `sampling` are flow models' (refused by the plan)."""
        from sdcli.sampling.parameterisation import Eps, V
        from sdcli.sampling.schedules import AYS, ModelSigmas, alphas_cumprod

        v = prediction == "v" if prediction else scheduler.get("prediction_type", "epsilon") == "v_prediction"
        return (V if v else Eps)(ModelSigmas(alphas_cumprod(scheduler)), AYS[self.ays])

    def native_size_of(self, pipe: Any) -> int:
        return int(pipe.unet.config.sample_size * self.latent.vae_scale)

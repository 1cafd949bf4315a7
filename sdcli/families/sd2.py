"""Stable Diffusion 2.x: OpenCLIP-H text encoder; 512-base (eps) and 768-v (v) share one architecture."""

from __future__ import annotations

from sdcli.families.base import Family, has_keys
from sdcli.families.sd1 import SD_PIPELINES

SD2_OPENCLIP = "cond_stage_model.model.token_embedding.weight"

# SD 2.x: 512-base (eps) and 768-v (v) share one architecture; see families.guess_prediction.
SD2 = Family("sd2", "Stable Diffusion 2.x", has_keys(SD2_OPENCLIP), SD_PIPELINES, 768, prediction="v",
             configs="sd2")

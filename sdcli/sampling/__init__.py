"""Sampling: the sampler table, and sdcli's own denoising loop as the WebUI runs it.

samplers.py is the table (pure; WebUI names -> how each sampler runs). The rest import
torch and are imported lazily: schedules (sigma schedules), kdiffusion and timesteps
(the sampling functions), rng (noise sources), denoiser (the CFG denoiser and the one
UNet call), refiner
(the WebUI's refiner switch inside a run), loop (one batch: sigmas,
start noise, sampler). May import sdcli.errors and the pure conditioning data type
(sdcli.conditioning.cond).
"""

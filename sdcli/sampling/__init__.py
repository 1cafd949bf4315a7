"""Sampling: the sampler table (WebUI names -> how each sampler runs), schedules and noise.

Pure tables here; anything that needs torch is imported inside functions.
May import sdcli.errors only.
"""

"""Requests: pure data, no torch. The generation request and its parts (generation), the hires
settings (hires), the choice tables of the WebUI settings (vocabulary), and their one validate().
May import sdcli.errors, sdcli.sampling.samplers (the pure sampler table) and the pure ControlNet
units (sdcli.controlnet.units); nothing heavier.
"""

"""Core: requests and their validation, one generation job end to end, images, metadata, output files,
ControlNet units (control: pure; preprocess: control images; controlnets: a job's units end to end),
hires fix (hires) and upscaling existing images (upscale).

May import sdcli.models, sdcli.sampling, sdcli.conditioning and sdcli.errors; never batch or cli.
"""

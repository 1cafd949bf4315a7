"""Core: requests and their validation, one generation job end to end, images, metadata, output files,
hires fix (hires) and upscaling existing images (upscale).

May import sdcli.models, sdcli.sampling, sdcli.conditioning and sdcli.errors; never batch or cli.
"""

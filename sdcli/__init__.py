"""sdcli: a scriptable Stable Diffusion command line built on diffusers."""

__version__ = "0.1.0"

"""Conditioning: the WebUI prompt syntax and turning prompts into UNet conditioning.

prompts (attention syntax, pure), schedule (prompt editing, alternation and AND per
step: the one place), cond (the Conditioning data type: cross-attention states plus
extra UNet kwargs), encoding (the WebUI's CLIP chunking and emphasis), sdxl (SDXL's
two encoders through encoding, pooled vector, size ids), extra_networks (<lora:...>
tags, pure). encoding and sdxl import torch and are imported lazily. May import
sdcli.errors only.
"""

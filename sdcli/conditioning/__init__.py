"""Conditioning: the WebUI prompt syntax (pure parser) and turning prompts into embeddings.

`prompts` is pure Python; `encoding` (SD 1.x/2.x) and `sdxl` (SDXL's two encoders and
pooled embedding) import torch and are imported lazily.
May import sdcli.errors only.
"""

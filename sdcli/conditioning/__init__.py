"""Conditioning: the WebUI prompt syntax (pure parser) and turning prompts into embeddings.

`prompts` is pure Python; `encoding` imports torch and is imported lazily.
May import sdcli.errors only.
"""

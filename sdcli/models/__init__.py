"""Models: resolving --model, single-file checkpoints and their bundled configs,
hashes, the models folder (folders), checking and safely loading weight files (safety), add-ons on a
loaded pipeline (lora, embeddings, vae; planned by assets), loading
pipelines, runtime plans, tiny checkpoints and tiny add-on files, and upscalers (the WebUI's set;
ESRGAN-family files through spandrel).

The only package that opens weight files or imports diffusers pipelines (always
inside functions). May import sdcli.errors, sdcli.families, sdcli.sampling and the pure
sdcli.conditioning.extra_networks; never job, execution, batch or cli.
"""

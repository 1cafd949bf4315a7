"""Models: resolving --model, the families table, single-file checkpoints and their bundled configs,
hashes, checking weight files, loading pipelines, runtime plans, tiny checkpoints.

The only package that opens weight files or imports diffusers pipelines (always
inside functions). May import sdcli.errors and sdcli.sampling; never core, batch or cli.
"""

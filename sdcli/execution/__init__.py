"""Execution: running one request's batches on a loaded model (batches: sdcli's own loop or the
diffusers pipeline), and the non-finite guard (finite). Imports torch inside functions.

May import request, io, controlnet, models, sampling, conditioning and errors.
"""

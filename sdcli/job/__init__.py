"""The job pipeline every entry point drives: a job end to end (run: check, load, generate, write),
generation of one request's images (generate) and upscaling existing images (upscale).

May import execution, request, io, controlnet, models, sampling, conditioning and errors; never batch,
cli or server.
"""

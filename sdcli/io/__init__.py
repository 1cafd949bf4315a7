"""Files in and out: input images and masks (images), infotext and image metadata (metadata), output
folders and atomic writes (output), replay records (replay).

May import request, models.safety and errors.
"""

"""Plain-Python core: requests, planning, generation. Heavy imports stay inside functions."""

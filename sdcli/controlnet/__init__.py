"""ControlNet, all of it: units as requested (units: pure), control images (preprocess), model files
(files), a job's units planned and loaded (plan), residuals at the UNet call (hook), units in batch
runs (batch).
"""

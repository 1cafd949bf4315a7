"""ControlNet, all of it: units as requested (units: pure), control images (preprocess), model files
(files), a job's units planned (plan), residuals at the UNet call (hook). They load through the job's
ModelCache (job.load), for one-shot jobs and prompt files alike.
"""

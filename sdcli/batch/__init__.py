"""Batch runs: prompt-file parsing (pure), input sets (folders and globs of images), the runner, its manifest,
and contact-sheet grids.

May import sdcli.job and the packages below it; never sdcli.cli.
"""

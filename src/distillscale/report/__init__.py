"""The calibration report of a sweep and the end-to-end main job.

- `runs`: the records of a sweep (directory or exported file), split by their role in the fits.
- `calibration`: the fits, extrapolation checks, capacity gap and plan (`calibrate`).
- `figures`, `page`, `report`: the figures, the self-contained HTML page, and `write_report`.
- `demo`: the built-in micro sweep and `run_demo` (`distillscale demo`).
"""

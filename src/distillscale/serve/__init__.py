"""The interactive planner page: `distillscale serve` runs a local web server whose JSON API
(`api`) answers with `planning.plan`, the call behind `distillscale plan`; the page (`static/`, no
external assets) draws its figures from that data.

- `api`: the page's controls -> the plan, its text and command, and the data of the figures.
- `server`: the standard-library HTTP server for the page and the API.
"""

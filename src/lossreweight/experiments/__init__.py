"""The paper's studies and the machinery they share.

- `runs`: cached, resumable training runs, one folder per (arm, seed).
- `summary`: per-arm means and spreads over seeds, paired differences, steps to a target.
- `arm_plots`, `tables`, `plotting`: the standard plots and tables; Agg-only figure helpers.
- `study`: writes a study's index.html and summary.json; `combined_report`: many studies, one page.
- `compare`, `demo`: `lossreweight compare` and `lossreweight demo`.
- `linreg`, `studies/`: the studies behind `lossreweight experiment NAME`.

Nothing heavy is imported here so `lossreweight --help` stays fast.
"""

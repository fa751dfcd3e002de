"""The paper's studies and the machinery they share (docs/architecture.md, "Where is X").

- `harness`: the one pipeline of every study (claim the folder, train, summarise, write).
- `runs`: cached, resumable training runs, one folder per (arm, seed); `--jobs`.
- `stats`: per-arm means over seeds, paired differences, intervals, steps to a target.
- `plots` and `page`: the plots, a study's HTML page, `lossreweight report`'s page.
- `scales`, `noise_data`: the protocol settings and the corrupted data several studies share.
- `compare`: `lossreweight compare` and `lossreweight demo`, as studies.
- `studies/`: the studies behind `lossreweight experiment NAME`, one module or folder each.

Nothing heavy is imported here so `lossreweight --help` stays fast.
"""

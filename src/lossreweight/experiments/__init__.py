"""The paper's studies and their shared report helpers.

Each study lives in its own module (e.g. `lossreweight.experiments.linreg`) and is imported
directly by whoever runs it; nothing heavy is imported here so `lossreweight --help` stays fast.
"""

"""Errors a user can act on.

`UserError` is raised for bad input anywhere in the package (config files, overrides,
command-line flags, data files, checkpoints). The command line prints its message as one
line on stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """An invalid configuration value or override."""


class DataError(UserError, ValueError):
    """Missing, empty, malformed or mismatched data files, shards or tokenizers."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete, tampered with, or from another model shape."""

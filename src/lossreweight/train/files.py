"""Reading the small JSON files of a run directory: `read_json_object` lives in
lossreweight.rundir (pure, no torch); re-exported here for the trainer's modules."""

from lossreweight.rundir import read_json_object

__all__ = ["read_json_object"]

"""Stage 2, the run's configuration: its schema (schema.py, each key's docstring its documentation), loading it
from a preset or YAML file plus `--set` overrides (loading.py), the checks between keys (checks.py) and the one-line
messages of what is wrong (messages.py). The presets are presets/*.yaml; reference.py turns the docstrings into
`neuroevo run --help`'s key list and docs/configuration.md (it is not imported here, so that
`python -m neuroevo.config.reference` runs it as a script).

`from neuroevo import config` gives what the rest of neuroevo uses: config.load, config.RunConfig and so on.
"""

from neuroevo.config.checks import check, elite_count, inheritance
from neuroevo.config.loading import (LATER_KEYS, MAX_BYTES, MAX_NODES, flat, from_dict, load, load_saved, loads_saved,
                                     missing_keys, override, parse_yaml, preset_path, to_dict, to_yaml)
from neuroevo.config.schema import (AUTO_SAMPLES, PRESETS, SPACES, DataConfig, EvolveConfig, FitnessConfig,
                                    QualityConfig, ResourcesConfig, RunConfig, TrackingConfig, TrainConfig)

__all__ = ["AUTO_SAMPLES", "LATER_KEYS", "MAX_BYTES", "MAX_NODES", "PRESETS", "SPACES", "DataConfig",
           "EvolveConfig", "FitnessConfig", "QualityConfig", "ResourcesConfig", "RunConfig", "TrackingConfig",
           "TrainConfig", "check", "elite_count", "flat", "from_dict", "inheritance", "load", "load_saved",
           "loads_saved", "missing_keys", "override", "parse_yaml", "preset_path", "to_dict", "to_yaml"]

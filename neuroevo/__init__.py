"""neuroevo: evolve GAN architectures by neuroevolution on Ray.

`neuroevo.run(...)`, `neuroevo.open(run_dir)` and `neuroevo.Result` (api.py) load on first use, so that `import
neuroevo` loads neither pandas, torch nor Ray.
"""

__version__ = "0.1.0"

_API = ("run", "open", "Result", "InputError", "Interrupted", "FileSystemFault", "NothingTrained")


def __getattr__(name: str) -> object:
    if name in _API:
        from neuroevo import api

        return getattr(api, name)
    raise AttributeError(f"module 'neuroevo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

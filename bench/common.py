"""What every benchmark shares: the machine's description, a private local Ray, saving and printing figures."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# this checkout's neuroevo, in this process and in the Ray workers it starts
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

if TYPE_CHECKING:
    import pandas as pd


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import ray
    import torch  # not at import: a benchmark's processes may have to start without torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def start_ray(num_cpus: int, num_gpus: int = 0) -> None:
    """A private Ray instance on this machine, whatever other clusters run here."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address="127.0.0.1",
             include_dashboard=False, log_to_driver=False, configure_logging=False)


def median(xs) -> float:
    return float(statistics.median(xs))


def report(name: str, summary: pd.DataFrame, runs: pd.DataFrame | None, info: dict, notes: list[str]) -> None:
    """Print the summary table and save it (CSV), with every run and the machine (JSON), under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.to_csv(RESULTS / f"{name}.csv", index=False)
    doc = {"benchmark": name, "machine": info, "notes": notes, "summary": summary.to_dict("records"),
           "runs": runs.to_dict("records") if runs is not None else []}
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    gpu = f", {info['gpu']}" if info["gpu"] else ", no GPU"
    print(f"\n{name}: {info['date']}, {info['cpu']} ({info['cores']} cores{gpu}), "
          f"load {info['load_average_at_start']:.1f}")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for note in notes:
        print(f"  {note}")
    print(f"saved {RESULTS / name}.csv and .json")

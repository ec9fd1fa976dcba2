"""Stage 5, what a run keeps: its directory (the one owner of its files and atomic writes), the Parquet generation
logs, the state that resumes it, resuming itself, and what it reports to experiment trackers."""

"""Stage 6, running an experiment on Ray: the start-up checks, the evolution loop, dispatching training tasks, the
tasks themselves, the cluster, its capacity, the cost estimate and the progress display."""

"""Stage 6, reading finished or running runs: SQL over the logs, the HTML report, the list of runs."""

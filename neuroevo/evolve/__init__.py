"""Stage 4, evolution: fitness from a training's results, Pareto ranking, the one ranking rule, selection and the
populations of each generation. Pure functions of chromosomes and numbers: no torch, no Ray."""

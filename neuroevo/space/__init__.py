"""Stage 1, the search space: what a chromosome is (genes), its layer plan, how chromosomes are drawn and varied, one
module per space (seed_v1.py, v2.py) and the registry that finds a space by name. Pure data: no torch, no Ray."""

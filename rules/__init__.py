"""symcore.rules: the e-graph stage (egglog).  `simplify` one expression, `dedupe` a population
in one e-graph; see api.py for the soundness contract and README.md for the design."""

"""Drop-ins for real search tools (gplearn, DEAP); each module is an optional extra."""

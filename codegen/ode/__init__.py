"""Dynamical systems: a system of equations as one native right-hand side, a native integrator
for systems, batches and populations, trajectory and derivative scoring."""

"""Search over configurations: the optimizer, sweeps, plots and the closed-form optima (Lambert W, thresholds)."""

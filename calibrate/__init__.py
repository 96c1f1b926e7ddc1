"""Calibration and validation: fit the cost model to measured runs and compare predictions with measurements."""

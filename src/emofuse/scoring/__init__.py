"""The metrics library: scores of predictions against labels (metrics) and the calibration of
probabilities (calibration). Numbers in, numbers out; it sits below the models, which fit with it."""

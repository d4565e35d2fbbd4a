"""Training, evaluation and run directories."""

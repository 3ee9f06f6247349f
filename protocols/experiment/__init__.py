"""The experiment: typed protocol configuration, methods, and the one loop over tasks."""

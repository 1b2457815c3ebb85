"""TF Serving layout, a TF-Serving-compatible local server and its client. Knows only SavedModels."""

"""Examples for the clinic's side of a deployment (not installed with the node)."""

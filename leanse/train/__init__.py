"""Training: the one Lightning-based engine and the recipes that orchestrate it."""

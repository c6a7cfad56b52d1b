"""icecube-cloud."""

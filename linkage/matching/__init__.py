"""What runs on the server: the Dice kernel, blocking, scores, thresholds and groups."""

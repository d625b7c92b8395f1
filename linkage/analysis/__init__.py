"""What coordinators read: the network of shared entities, quality against a truth, explanations."""

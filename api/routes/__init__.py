"""One router per resource (claws, minis, jobs) and the service routes (healthz, metrics)."""

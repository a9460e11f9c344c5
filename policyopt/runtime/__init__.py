"""Runtime: the trainer (the one loop), collectors, checkpoints, logging, seeding."""

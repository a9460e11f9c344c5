"""Leaf utilities every layer may import: configs, seeding, the protocols and state-tree type, memory."""

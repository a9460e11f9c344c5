"""policyopt: reinforcement-learning policy optimization, from vectorised environments to language models."""

__version__ = "0.1.0"

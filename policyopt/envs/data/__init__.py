"""Instance files shipped with policyopt.envs (job-shop benchmarks in OR-Library format)."""

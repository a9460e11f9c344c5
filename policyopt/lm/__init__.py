"""Language-model policies, sampling, tasks, rewards and the sandbox for generated code."""

"""Files of the shipped built-in model (a Hugging Face model directory); see policyopt.lm.builtin."""

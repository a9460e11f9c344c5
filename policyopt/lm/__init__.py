"""Language-model policies, sampling, tasks, rewards and the sandbox for generated code."""


def load_builtin(*args, **kwargs):
    """``(model, tokenizer)`` of the shipped built-in model; see :func:`policyopt.lm.builtin.load_builtin`.

    Imported lazily so that ``import policyopt.lm`` does not import transformers.
    """
    from policyopt.lm.builtin import load_builtin as _load

    return _load(*args, **kwargs)

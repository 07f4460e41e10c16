"""Events, traces and the inspector (replay, which builds a runtime, is in ``runtime``).

Import from the submodules (``wakeful.observe.events``...): this package is imported
by the lowest layers (the causal context vars live in ``core.context``) and must not
pull in the rest.
"""

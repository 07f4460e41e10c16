"""Events, traces, the inspector and replay.

Import from the submodules (``wakeful.observe.events``...): this package is imported
by the lowest layers (through ``observe.context``) and must not pull in the rest.
"""

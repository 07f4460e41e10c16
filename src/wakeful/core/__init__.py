"""Records and states every layer shares: plain dataclasses and enums, no behaviour
beyond checking lifecycle transitions. Nothing here imports another Wakeful package."""

"""Shared pieces of the PCMM digital twin: the tag registry, the RTD model and the command line."""

"""Composition roots and command-line entry points."""

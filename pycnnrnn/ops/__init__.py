"""Per-operator numpy entry points (validation + normalisation, then the C++ kernel).

The public surface is pycnnrnn.functional, which re-exports these."""

"""drsl inside other libraries.

- :mod:`drsl.integrations.pml`: DRSL as a pytorch-metric-learning loss (``pip install
  drsl[pml]``; the course environment has it).

Nothing here is imported by ``import drsl``: each module imports its library on first use.
"""

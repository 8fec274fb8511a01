"""Adapters to other libraries; each submodule imports its library and only it does.

- :mod:`flowforge.contrib.pyro`: a flow as a Pyro distribution (``pip install flowforge[pyro]``).
- :mod:`flowforge.contrib.sbi`: a recipe as an sbi density estimator (``flowforge[sbi]``).

Nothing here is imported by ``import flowforge``: the core needs only torch and numpy.
"""

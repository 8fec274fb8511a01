"""``flowforge serve``: a local web playground for 2-D flows.

Pick a toy data set or draw points, pick a flow family and its depth, press train, and watch
the density, samples, the loss against the true entropy and the grid pushed layer by layer
update live (server-sent events); stop, resume, download the run directory. Each run is an
ordinary run directory in the workspace folder, trained by :func:`flowforge.runs.train_run`
in a worker process (:mod:`.worker`). The server binds 127.0.0.1; another address needs
``allow_remote=True`` (``--allow-remote``), since the playground has no authentication.
Every request passes :class:`~flowforge.serve.app.Guard` (its ``Host``, its origin, its size);
at most ``max_trainings`` workers train at once, and each stops when the server is gone.
"""

from flowforge.serve.app import create_app, serve

__all__ = ["create_app", "serve"]

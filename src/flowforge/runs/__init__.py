"""Runs: the unit a user trains, resumes, evaluates, samples and shares.

- :func:`train_run` starts or resumes a run (:mod:`.training`);
- :func:`load` opens a run's model without its data, :func:`open_run` the whole run
  (:mod:`.load`);
- :class:`RunDirectory` owns the directory's files (:mod:`.directory`);
- :mod:`.build` turns a config into data, objective and model; :mod:`.figures` draws;
- the commands' verbs: :mod:`.shorthand` (the configs of the short forms), :mod:`.evaluation`
  (``eval`` and the summary line), :mod:`.sampling`, :mod:`.image_grids` (``interpolate``,
  ``manipulate``), :mod:`.inpaint`.
"""

from flowforge.runs.directory import RunDirectory, RunLocked
from flowforge.runs.load import Run, load, open_run
from flowforge.runs.training import RunResult, train_run

__all__ = ["Run", "RunDirectory", "RunLocked", "RunResult", "load", "open_run", "train_run"]

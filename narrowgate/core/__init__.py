"""narrowgate's ground floor: the tools every package above uses, importing nothing above them.

- ``files``: atomic writes and YAML reading (``yaml.safe_load``) of config files;
- ``schema``: the config-schema helpers the grid and study files share (pydantic validators, one error
  message naming the file and the key);
- ``evaluation``: the one in-process lmms-eval evaluation call (narrowgate's task index, the filelock
  workaround, errors shown as their cause);
- ``stats``: the paired bootstrap behind every interval narrowgate reports.

Nothing here imports ``narrowgate.grid``, ``leaderboard``, ``study``, ``toy``, ``analyses``, the
``lmms_eval`` launcher or ``model_wrappers``; importing the package imports none of its modules.
"""

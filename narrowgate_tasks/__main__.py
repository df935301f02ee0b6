"""``python -m narrowgate_tasks`` prints the folder of narrowgate's task YAMLs, for lmms-eval's own command:
``lmms-eval --include_path "$(python -m narrowgate_tasks)" --tasks list``."""

from pathlib import Path

print(Path(__file__).resolve().parent)

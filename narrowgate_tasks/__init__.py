"""narrowgate's lmms-eval tasks: the paper's VQAv2 / COCO / Flickr30k protocol, the standard full splits,
and two fixture tasks on packaged synthetic data. lmms-eval finds them with ``--include_path`` set to this
folder (the ``lmms_eval`` launcher does it).

Modules: ``prompts`` (the task/wrapper prompt contract and answer post-processing), ``sources`` (hub
datasets and ``NARROWGATE_DATA_DIR`` local copies), ``utils`` (the YAML hooks), ``metrics`` (scores),
``shapes`` and ``make_smoke_data`` (the synthetic shapes world and the fixture data). Kept import-light:
importing the package imports none of them.
"""

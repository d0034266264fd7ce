"""Exports of ponder's tasks, verifiers and reward models to other trainers.

- `verl`: parquet rows in verl's RL data format and the reward module that scores them
  (`verl.py` writes them; `verl_reward.compute_score` is what verl calls). `ponder export
  verl` is the command.

Nothing here imports the target trainer: the files are plain parquet and Python, and the
reward module needs only ponder on the machines that run it.
"""

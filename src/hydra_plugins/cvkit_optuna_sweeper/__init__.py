"""cvkit's Optuna sweeper for Hydra (``-m hydra/sweeper=optuna``); see :mod:`.optuna_sweeper`."""

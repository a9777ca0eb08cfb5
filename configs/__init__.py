"""cvkit's Hydra configs, installed as the package ``cvkit.configs`` (searched as ``pkg://cvkit.configs``)."""

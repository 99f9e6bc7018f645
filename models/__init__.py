"""Built-in model plugins, installed as the package `harness_models`; each module registers models."""

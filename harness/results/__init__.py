"""results: what a run found, ranked and tracked.

- leaderboard: rows from each model's artefacts, ranked, the Pareto front, results.json
- track: the run's parameters, metrics and artefacts to MLflow (--track mlflow)
"""

__all__ = ["leaderboard", "track"]

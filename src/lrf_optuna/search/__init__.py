"""The Optuna search: space, objectives, settings record, studies, storages, workers."""

"""Fine-tuning results written back into a real SQLite study, with the model as artifact."""

from __future__ import annotations

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact

from lrf_optuna.results._finetune import FinetuneResult
from lrf_optuna.results._records import record_finetune
from lrf_optuna.results._selection import FINETUNED_FROM, feasible_trials, select_trial
from lrf_optuna.search._storage import artifact_dir_for


def test_record_trial_carries_results_and_the_model_artifact(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=["minimize", "minimize", "maximize"])
    study.optimize(lambda t: (t.suggest_int("r", 1, 9), 10.0, 0.5), n_trials=3)
    chosen = study.trials[1]
    model_file = tmp_path / "compressed.keras"
    model_file.write_bytes(b"not really a model, but bytes to round-trip")
    result = FinetuneResult(0.91, 0.42, 0.88, 12.5, 1, history={"loss": [1.0]})

    record = record_finetune(study, chosen, result, model_file, artifact_dir_for(url))

    reloaded = optuna.load_study(study_name="s", storage=url).trials[-1]
    assert reloaded.number == record.number == 3 and reloaded.state == optuna.trial.TrialState.COMPLETE
    assert reloaded.params == chosen.params and reloaded.values == chosen.values
    attrs = reloaded.user_attrs
    assert attrs[FINETUNED_FROM] == 1 and "history" not in attrs
    assert (attrs["accuracy_original"], attrs["accuracy_compressed"], attrs["accuracy_finetuned"]) == (
        0.91,
        0.42,
        0.88,
    )
    assert attrs["seconds"] == 12.5 and attrs["model_file"] == str(model_file)
    copy = tmp_path / "downloaded.keras"
    download_artifact(
        artifact_store=FileSystemArtifactStore(str(artifact_dir_for(url))),
        artifact_id=attrs["model_artifact_id"],
        file_path=str(copy),
    )
    assert copy.read_bytes() == model_file.read_bytes()
    # the record never counts as a search trial, nor is it selected
    assert [t.number for t in feasible_trials(study)] == [0, 1, 2]
    assert select_trial(study, trial_number=1).number == 1

"""Tests of t3kan_jax.train.workdir: the config changes a workdir refuses; init_from layouts."""

import importlib
import json

import pytest

from t3kan_jax.train import workdir as workdir_lib


def _config(**model):
    config = importlib.import_module("configs.t3kan").get_config()
    config.model.update(model)
    return config


def test_a_workdir_refuses_another_model_and_names_the_field(tmp_path):
    workdir_lib.prepare(_config(), tmp_path)
    with pytest.raises(ValueError, match=r"model.inner: 'kan' in the workdir, 'mlp' now"):
        workdir_lib.prepare(_config(inner="mlp"), tmp_path)
    with pytest.raises(ValueError, match=r"model.scan_layers: False in the workdir, True now"):
        workdir_lib.prepare(_config(scan_layers=True), tmp_path)


def test_the_inner_loop_implementation_may_change_on_resume(tmp_path):
    workdir_lib.prepare(_config(), tmp_path)
    workdir_lib.prepare(_config(ttt_impl="auto"), tmp_path)
    config = _config()
    assert workdir_lib.default_workdir(config, {"model.ttt_impl": "pallas"}) == (
        workdir_lib.default_workdir(config)
    )


def test_model_fields_missing_from_an_older_config_json_read_as_their_defaults(tmp_path):
    workdir_lib.prepare(_config(), tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    for field in ("scan_layers", "ttt_qk_norm", "ttt_rope"):
        del stored["model"][field]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    workdir_lib.prepare(_config(), tmp_path)  # the defaults: the same run
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"model.ttt_qk_norm: False in the workdir, True now"):
        workdir_lib.prepare(_config(ttt_qk_norm=True), tmp_path)


@pytest.mark.parametrize("sub", ["", "best", "checkpoints"])
def test_init_from_a_run_of_the_other_layout_is_refused(tmp_path, sub):
    workdir_lib.prepare(_config(scan_layers=True), tmp_path)
    source = str(tmp_path / sub) if sub else str(tmp_path)
    workdir_lib.check_init_from_layout(source, True)
    with pytest.raises(ValueError, match=r"model.scan_layers=True, this run has .*=False"):
        workdir_lib.check_init_from_layout(source, False)
    workdir_lib.check_init_from_layout(str(tmp_path / "elsewhere"), False)  # no config.json

import json

from contrast3d.cli import main


def test_pretrain_logs_probes_and_probe_command_scores_the_backbone(sim_scenes, tmp_path, capsys):
    scenes = sim_scenes / "pointcept"
    run = tmp_path / "run"
    code = main(["pretrain", "pointcontrast", "--data", str(scenes), "--out", str(run), "--steps", "2",
                 "--device", "cpu", "--no-progress", "--probe-data", str(scenes), "--probe-every", "2",
                 "--set", "model.preset=spunet-tiny", "--set", "data.grid_size=0.1", "--set", "data.max_points=3000",
                 "--set", "data.match_radius=0.15", "--set", "loader.batch_size=1", "--set", "loader.num_workers=0",
                 "--set", "method.num_matches=256", "--set", "log_every=1", "--set", "schedule.warmup_steps=0"])
    assert code == 0
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    probes = [r for r in logged if "probe/linear_miou" in r]
    assert probes and 0.0 <= probes[-1]["probe/linear_miou"] <= 1.0 and probes[-1]["probe/eff_rank"] >= 1.0
    capsys.readouterr()
    assert main(["probe", "--init", str(run / "backbone.safetensors"), "--data", str(scenes), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["probe/knn_miou"] <= 1.0 and result["probe/feat_std"] > 0.0


def test_probe_command_missing_backbone_is_a_data_error(sim_scenes, tmp_path, capsys):
    assert main(["probe", "--init", str(tmp_path / "missing.safetensors"), "--data", str(sim_scenes)]) == 2
    assert "missing.safetensors" in capsys.readouterr().err

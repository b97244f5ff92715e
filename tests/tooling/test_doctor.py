"""scripts/doctor.py: the parsing behind each check, and the live run on this machine."""

from __future__ import annotations

import socket

import pytest

from scripts import doctor
from scripts.serving.ts_config import listen_addresses, local_url


def test_listen_addresses_and_local_urls():
    text = "inference_address=http://0.0.0.0:8080\nmanagement_address=http://127.0.0.1:8081\n# metrics_address=http://x:1\n"
    assert listen_addresses(text) == {"inference": ("0.0.0.0", 8080), "management": ("127.0.0.1", 8081)}
    assert local_url(text, "inference") == "http://127.0.0.1:8080"
    assert local_url(text, "management") == "http://127.0.0.1:8081"


def test_cpu_flags_keeps_only_the_interesting_ones():
    assert doctor.cpu_flags("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n") == {"avx2", "avx512f", "avx512_bf16", "amx_tile"}
    assert doctor.cpu_flags("no flags line") == set()


def test_pinned_versions_match_pyproject():
    pins = doctor.pinned_versions(doctor.REPO / "pyproject.toml")
    assert pins["torch"] == "2.14.1"
    assert pins["torchserve"] == "0.12.0"


@pytest.fixture
def taken_port():
    """A port something listens on, for as long as the test runs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_fails_with_a_fix(tmp_path, taken_port):
    config = tmp_path / "config.properties"
    config.write_text(f"inference_address=http://127.0.0.1:{taken_port}\n")
    (check,) = doctor.check_ports(config)
    assert not check.ok and "make stop" in check.fix


def test_this_machine_passes_the_required_checks(tmp_path):
    config = tmp_path / "config.properties"
    config.write_text("")  # ports are covered above; the suite's own servers may hold the defaults
    failed = [c for c in doctor.run_checks(config) if c.required and not c.ok]
    assert failed == []


def test_a_taken_front_port_names_the_front(tmp_path, taken_port):
    config = tmp_path / "config.properties"
    config.write_text("")
    (check,) = doctor.check_ports(config, f"127.0.0.1:{taken_port}")
    assert not check.ok and check.name == f"port {taken_port} (front)" and "FRONT=" in check.fix


def test_the_front_flag_and_its_old_name(tmp_path, taken_port, capsys):
    config = tmp_path / "config.properties"
    config.write_text("")
    for flag in ("--front", "--v2-front"):
        doctor.main(["--config", str(config), flag, f"127.0.0.1:{taken_port}"])
        assert f"[FAIL] port {taken_port} (front)" in capsys.readouterr().out


def test_the_cuda_check_says_where_the_workers_run():
    """Never a failure (a CPU host is fine); on a GPU host it names the way to serve on the GPUs."""
    import torch

    check = doctor.check_cuda()
    assert check.ok and not check.required
    if torch.cuda.is_available():
        assert f"{torch.cuda.device_count()} GPU(s)" in check.detail and "make serve VARIANT=gpu" in check.detail
    else:
        assert check.detail.startswith("no GPU visible") and "workers run on CPU" in check.detail

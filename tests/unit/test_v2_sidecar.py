"""scripts/serving/v2_sidecar.py without a server: when a Sidecar starts (not after a stop, not without
TorchServe), and the pause before a dead front is started again. The restart itself and the exit
with a killed parent run for real in tests/integration/test_v2_sidecar.py."""

from __future__ import annotations

import pytest

from scripts.serving.v2_sidecar import RESTART_PAUSE_S, STABLE_S, Sidecar, restart_pause

SHORTEST, LONGEST = RESTART_PAUSE_S


@pytest.fixture
def sidecar(tmp_path) -> Sidecar:
    """A Sidecar whose TorchServe never answers (port 9, nothing listens)."""
    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://127.0.0.1:9\nmanagement_address=http://127.0.0.1:9\n")
    return Sidecar("127.0.0.1:1", config, tmp_path / "key_file.json", [])


def test_a_sidecar_stopped_before_torchserve_answers_never_starts(sidecar):
    """serve.py's SIGTERM can come while the front waits for TorchServe: it must not start after."""
    sidecar.stop()
    assert sidecar.start_when_up(5) == "TorchServe stopped first" and sidecar.process is None


def test_a_sidecar_gives_up_when_torchserve_never_answers(sidecar):
    problem = sidecar.start_when_up(0.3)
    assert "does not answer" in problem and sidecar.process is None


def test_a_front_that_keeps_dying_waits_longer_each_time_up_to_the_longest_pause():
    pause, pauses = None, []
    for _ in range(8):
        pause = restart_pause(pause, uptime_s=0.5)
        pauses.append(pause)
    assert pauses[:3] == [SHORTEST, 2 * SHORTEST, 4 * SHORTEST]
    assert pauses == sorted(pauses) and pauses[-1] == LONGEST


def test_a_front_that_ran_a_while_before_dying_starts_again_after_the_shortest_pause():
    assert restart_pause(LONGEST, uptime_s=STABLE_S) == SHORTEST
    assert restart_pause(LONGEST, uptime_s=STABLE_S - 1) == LONGEST

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# Deterministic CPU maths for parity tests.
torch.backends.cudnn.enabled = False
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    """A private PulseAudio server with virtual devices at 22.05 kHz (see tests/pulse.py)."""
    import pulse as pulse_module

    if not pulse_module.available():  # pragma: no cover - .ci/setup installs pulseaudio
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    server = pulse_module.PulseServer(tmp_path_factory.mktemp("pulse")).start()
    yield server
    server.stop()

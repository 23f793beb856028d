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

"""The registry: built-in names, and a third-party plugin pip-installed during the session."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import chunk_sizes, stream_all

import codecstream as cs

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "codecstream-tiny-plugin"
version = "0.1"

[project.entry-points."codecstream.models"]
tiny = "codecstream_tiny_plugin:SPECS"
broken = "codecstream_tiny_plugin:DOES_NOT_EXIST"
"""

PLUGIN_CODE = '''
"""A toy codec built only from codecstream's public layers: a third-party plugin.

It is parts and a config: the engine writes encode / decode / the streams on top of them."""
from codecstream import Codec, CodeLevel, IndexCodes, ModelSpec, TokenSpec
from codecstream.streaming import StreamingConv1d, StreamingConvTranspose1d


class ScalarQuantizer:
    """Latents → 16 levels and back."""

    def encode(self, latents, options):
        return (latents * 4 + 8).round().clamp(0, 15).long()

    def decode(self, codes):
        return (codes.float() - 8) / 4


class TinyCodec(Codec):
    def __init__(self, config):
        super().__init__()
        self.name, self.sample_rate, self.channels, self.hop_length = "tiny-codec", 8000, 1, 4
        self.token_spec = TokenSpec((CodeLevel(1, 16, 4, 8000),))
        self.code_format = IndexCodes(codebook_size=16, max_codebooks=1)
        self.encoder = StreamingConv1d(1, 1, 6, stride=4, padding=(2, 0))
        self.quantizer = ScalarQuantizer()
        self.decoder = StreamingConvTranspose1d(1, 1, 8, stride=4, trim=(0, 4))


SPECS = [ModelSpec("tiny-codec", "a toy plugin", TinyCodec, None, lambda path: (None, {}))]
'''


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin_src")
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "codecstream_tiny_plugin.py").write_text(textwrap.dedent(PLUGIN_CODE))
    target = tmp_path_factory.mktemp("plugin_site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(target))
    sys.modules.pop("codecstream_tiny_plugin", None)


def test_builtins_are_listed():
    assert "encodec-24khz" in cs.list_models()
    spec = cs.get_spec("encodec-24khz")
    assert spec.hub_id == "facebook/encodec_24khz"


def test_installed_plugin_is_found_and_streams(tiny_plugin):
    with pytest.warns(UserWarning, match="'broken'.*failed to load"):
        names = cs.list_models()
    assert "tiny-codec" in names and "encodec-24khz" in names
    with pytest.warns(UserWarning):
        model = cs.load("tiny-codec", weights="random", dtype=torch.float64)
    audio = torch.randn(1, 1, 103, dtype=torch.float64) * 0.2
    codes = model.encode(audio)
    assert codes.shape == (1, 1, 25)  # floor((2 + 103 - 6) / 4) + 1
    for kind in ("ones", "primes", "whole"):
        assert torch.equal(stream_all(model.encoder_stream(), audio, chunk_sizes(103, kind)), codes)
    decoded = model.decode(codes)
    assert decoded.shape == (1, 1, 100)
    assert torch.allclose(stream_all(model.decoder_stream(), codes, chunk_sizes(25, "ones")), decoded, atol=1e-12)
    assert model.encoder_stream().latency_samples == 4  # a whole hop; the conv needs no lookahead
    # The plugin is a constructor and parts: it implements no hook of its own.
    assert [name for name, value in vars(type(model)).items() if callable(value)] == ["__init__"]
    assert model.decoder_stream().latency_samples == 0

"""NeuCodec: parity with transformers' NeuCodecModel (its layout) and with neuphonic's neucodec
package modules (the published pytorch_model.bin layout), the w2v-BERT front end against
SeamlessM4T's feature extractor, windowed streaming with its error measured, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import max_rel_error

import codecstream as cs
from codecstream.models.neucodec import NEUCODEC, NeuCodecCodec, NeuCodecConfig
from codecstream.models.neucodec.checkpoint import read_neucodec_checkpoint
from codecstream.models.neucodec.config import SemanticConfig
from codecstream.models.neucodec.features import kaldi_mel_filters, semantic_features
from codecstream.weights import load_state

transformers = pytest.importorskip("transformers", reason="a parity reference installed by .ci/setup (dev extra)")

# The published architecture (strides, kernels, n_fft 1920 / hop 480, 8 FSQ levels of 4) at
# widths that run in a second.
SMALL = NeuCodecConfig(
    encoder_hidden_size=4, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
    semantic=SemanticConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128),
)


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every norm gain, bias, Snake-β log-scale and embedding random, not at its init value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or name.endswith(("window", "filter")):
                continue
            if name.endswith(("alpha", "beta")):
                tensor.copy_(torch.empty(tensor.shape).uniform_(-0.5, 0.5, generator=generator))
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(torch.empty(tensor.shape).uniform_(0.5, 1.5, generator=generator))
            elif name.endswith("bias") or "embedding" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)


def hf_model(config: NeuCodecConfig, directory, seed: int):
    torch.manual_seed(seed)
    semantic = config.semantic
    model = transformers.NeuCodecModel(transformers.NeuCodecConfig(
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_heads,
        head_dim=config.hidden_size // config.num_heads, encoder_hidden_size=config.encoder_hidden_size,
        quantization_dim=config.quantization_dim,
        semantic_model_config=dict(
            model_type="wav2vec2-bert", hidden_size=semantic.hidden_size, num_hidden_layers=semantic.num_layers,
            num_attention_heads=semantic.num_heads, intermediate_size=semantic.intermediate_size,
        ),
    )).eval()
    randomise(model, seed)
    model.save_pretrained(directory)
    return model


def speech_like(seconds: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return torch.tensor(0.2 * voiced * envelope + 0.02 * rng.standard_normal(t.shape), dtype=torch.float32)[None, None]


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("neucodec_hf")
    return hf_model(SMALL, directory, seed=1), directory


@pytest.fixture(scope="module")
def small_hf(small_dir):
    reference, directory = small_dir
    return reference, cs.load("neucodec", weights=directory)


def test_front_end_matches_seamless_m4t_features():
    """NeuCodec feeds w2v-BERT SeamlessM4T's Kaldi-style features; ours are computed in float64."""
    extractor = transformers.SeamlessM4TFeatureExtractor()
    audio = speech_like(1.03, seed=2)[0, 0].numpy()  # 101 frames: the odd one padded
    expected = extractor(audio, sampling_rate=16_000, return_tensors="pt").input_features[0]
    ours = semantic_features(torch.from_numpy(audio), kaldi_mel_filters())
    assert ours.shape == expected.shape == (51, 160)
    assert (ours.float() - expected).abs().max() <= 2e-3  # the reference works in float32; features have unit variance


def test_decoder_parity_with_transformers(small_hf):
    reference, model = small_hf
    codes = torch.randint(0, 65536, (2, 1, 37))
    with torch.no_grad():
        expected = reference.decode(audio_codes=codes).audio_values
    decoded = model.decode(codes)
    assert decoded.shape == expected.shape == (2, 1, 37 * 480)
    assert max_rel_error(decoded, expected) <= 1e-5


def test_encoder_parity_with_transformers(small_hf):
    reference, model = small_hf
    audio = speech_like(1.3, seed=3)
    padded = F.pad(audio, (0, 320 - audio.shape[-1] % 320))
    features = model.semantic_input(padded)
    with torch.no_grad():
        expected = reference.encode(padded, input_features=features).audio_codes
    codes = model.encode(audio, sample_rate=16_000, features=features)
    assert codes.shape == expected.shape == (1, 1, 65)
    assert torch.equal(codes, expected)
    assert torch.equal(model.encode(audio), codes)  # the built-in front end gives those features


def official_parts(config: NeuCodecConfig, seed: int) -> dict[str, torch.nn.Module]:
    """The published model's modules from the neucodec package (and transformers' w2v-BERT, as
    neucodec loads it), random, under the names ``pytorch_model.bin`` uses."""
    pytest.importorskip("neucodec", reason="a parity reference installed by .ci/setup (dev extra)")
    from neucodec.codec_decoder_vocos import CodecDecoderVocos
    from neucodec.codec_encoder import CodecEncoder
    from neucodec.module import SemanticEncoder

    torch.manual_seed(seed)
    semantic = config.semantic
    parts = {
        "semantic_model": transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(
            hidden_size=semantic.hidden_size, num_hidden_layers=semantic.num_layers + 1,  # one more than used
            num_attention_heads=semantic.num_heads, intermediate_size=semantic.intermediate_size,
        )),
        "SemanticEncoder_module": SemanticEncoder(semantic.hidden_size, semantic.hidden_size, semantic.hidden_size),
        "CodecEnc": CodecEncoder(ngf=config.encoder_hidden_size, hidden_dim=config.hidden_size),
        "generator": CodecDecoderVocos(
            hidden_dim=config.hidden_size, depth=config.num_layers, heads=config.num_heads,
            pos_meb_dim=config.hidden_size // config.num_heads, hop_length=480, vq_dim=config.quantization_dim,
        ),
        "fc_prior": torch.nn.Linear(config.quantization_dim, config.quantization_dim),
        "fc_post_a": torch.nn.Linear(config.quantization_dim, config.hidden_size),
    }
    for index, part in enumerate(parts.values()):
        randomise(part, seed + index)
        part.eval()
    return parts


def official_encode(parts, audio: torch.Tensor, layer: int) -> torch.Tensor:
    """neucodec's ``NeuCodec.encode_code``, step by step."""
    extractor = transformers.SeamlessM4TFeatureExtractor()
    y = F.pad(audio, (0, 320 - audio.shape[-1] % 320))
    features = extractor(y[0].numpy(), sampling_rate=16_000, return_tensors="pt").input_features
    acoustic = parts["CodecEnc"](y).transpose(1, 2)
    hidden = parts["semantic_model"](features, output_hidden_states=True).hidden_states[layer].transpose(1, 2)
    semantic = parts["SemanticEncoder_module"](hidden)
    frames = min(acoustic.shape[-1], semantic.shape[-1])
    joined = torch.cat([semantic[..., :frames], acoustic[..., :frames]], dim=1)
    joined = parts["fc_prior"](joined.transpose(1, 2)).transpose(1, 2)
    return parts["generator"](joined, vq=True)[1], features


def official_decode(parts, codes: torch.Tensor) -> torch.Tensor:
    """neucodec's ``NeuCodec.decode_code``."""
    latents = parts["generator"].quantizer.get_output_from_indices(codes.transpose(1, 2))
    return parts["generator"](parts["fc_post_a"](latents), vq=False)[0]


def test_parity_with_the_neucodec_package_layout(tmp_path):
    parts = official_parts(SMALL, seed=4)
    state = {f"{prefix}.{key}": value for prefix, part in parts.items() for key, value in part.state_dict().items()}
    state["generator.fc_post_s.weight"] = torch.zeros(2, 2)  # a training leftover the loader drops
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "meta.yaml").write_text("downloads: 0\n")
    config, plugin_state = read_neucodec_checkpoint(tmp_path, NeuCodecConfig(
        encoder_hidden_size=4, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
        semantic=SemanticConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128),
    ))
    model = NeuCodecCodec(config)
    load_state(model, plugin_state)  # w2v-BERT's third layer dropped: NeuCodec reads layer 2 of it here
    model.eval()
    audio = speech_like(0.9, seed=5)
    with torch.no_grad():
        codes_ref, features = official_encode(parts, audio, layer=2)
        assert torch.equal(model.encode(audio, features=features), codes_ref)
        decoded_ref = official_decode(parts, codes_ref)
    assert max_rel_error(model.decode(codes_ref), decoded_ref) <= 1e-5


def test_decoder_only_checkpoint(tmp_path):
    parts = official_parts(SMALL, seed=6)
    state = {f"{p}.{k}": v for p in ("generator", "fc_post_a") for k, v in parts[p].state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    config, plugin_state = read_neucodec_checkpoint(tmp_path, SMALL)
    assert not config.with_encoder
    model = NeuCodecCodec(config)
    load_state(model, plugin_state)
    codes = torch.randint(0, 65536, (1, 1, 9))
    with torch.no_grad():
        assert max_rel_error(model.eval().decode(codes), official_decode(parts, codes)) <= 1e-5
    with pytest.raises(cs.OptionError, match="without its encoder"):
        model.encode(torch.zeros(1, 1, 1600))


def test_windowed_stream_converges_to_offline(small_hf):
    _, model = small_hf
    codes = torch.randint(0, 65536, (1, 1, 60))
    offline = model.decode(codes)
    errors = []
    for lookahead in (0, 4, 60):
        stream = model.decoder_stream(mode="windowed", lookahead_frames=lookahead, context_frames=60, block_frames=5)
        parts = [stream.push(codes[..., i : i + 1]) for i in range(60)]
        assert stream.latency_samples == (lookahead + 5 - 1) * 480  # (R + B - 1) hops
        streamed = torch.cat(parts + [stream.flush()], dim=-1)
        assert streamed.shape == offline.shape
        errors.append(max_rel_error(streamed, offline))
    # No lookahead is audibly wrong, the whole utterance as lookahead and context is offline.
    assert errors[0] > errors[1] > errors[2] and errors[2] <= 1e-5


def test_exact_streams_are_refused_with_a_way_out(small_hf):
    _, model = small_hf
    with pytest.raises(cs.OptionError, match="mode='windowed'"):
        model.decoder_stream()
    with pytest.raises(cs.OptionError, match="call encode"):
        model.encoder_stream()
    with pytest.raises(cs.SampleRateError):
        model.encode(torch.zeros(1, 1, 2400), sample_rate=24_000)
    with pytest.raises(cs.CodeRangeError):
        model.decode(torch.full((1, 1, 3), 65536))
    with pytest.raises(cs.ShapeError):
        model.decode(torch.zeros(1, 2, 3, dtype=torch.long))
    assert model.decode(torch.zeros(1, 1, 0, dtype=torch.long)).shape == (1, 1, 0)


def test_published_decoder_size(tmp_path):
    """The published decoder (1024 wide, 12 layers: the part NeuTTS streams) against transformers."""
    config = NeuCodecConfig(semantic=SemanticConfig(hidden_size=1024, num_layers=1, num_heads=16, intermediate_size=64))
    reference = hf_model(config, tmp_path, seed=7)
    model = cs.load("neucodec", weights=tmp_path)
    assert (model.config.hidden_size, model.config.num_layers, model.config.intermediate_size) == (1024, 12, 4096)
    codes = torch.randint(0, 65536, (1, 1, 25))
    with torch.no_grad():
        assert max_rel_error(model.decode(codes), reference.decode(audio_codes=codes).audio_values) <= 1e-4
    assert NEUCODEC.hop_length == 480 and NEUCODEC.n_fft == 1920 and NEUCODEC.codebook_size == 65536


def test_command_line_runs_offline_and_says_so(small_dir, tmp_path):
    """encode takes 16 kHz (resampled from the file), decode gives 24 kHz; both offline."""
    import subprocess
    import sys

    import soundfile

    _, directory = small_dir
    audio = speech_like(1.0, seed=8)[0, 0].numpy()
    import soxr

    soundfile.write(tmp_path / "in.wav", soxr.resample(audio, 16_000, 22_050), 22_050)

    def run(*args):
        result = subprocess.run([sys.executable, "-m", "codecstream", *args, "--weights", str(directory)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("encode", str(tmp_path / "in.wav"), str(tmp_path / "x.codes"), "--model", "neucodec", "--resample")
    assert "(offline)" in run("decode", str(tmp_path / "x.codes"), str(tmp_path / "out.wav"))
    out, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == 24_000 and out.shape == (24_000,)
    assert "offline" in run("roundtrip", str(tmp_path / "in.wav"), str(tmp_path / "rt.wav"), "--model", "neucodec", "--resample")
    assert np.abs(soundfile.read(tmp_path / "rt.wav")[0] - out).max() < 1e-4  # the same codes, the same decode

"""DAC 44/24/16 kHz: parity with transformers' DacModel (its layout), exact streaming, latency."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, depends_on, max_rel_error, stream_all
from safetensors.torch import save_file

import codecstream as cs
from codecstream.models.dac import DAC_44KHZ, DacCodec, DacConfig
from codecstream.models.dac.checkpoint import read_dac_checkpoint
from codecstream.weights import fold_weight_norm, load_state

transformers = pytest.importorskip("transformers", reason="a parity reference installed by .ci/setup (dev extra)")

SMALL = {
    "44k": DacConfig(sampling_rate=44100, encoder_hidden_size=4, decoder_hidden_size=32, n_codebooks=4),
    "24k": DacConfig(sampling_rate=24000, encoder_hidden_size=4, downsampling_ratios=(2, 4, 5, 8), decoder_hidden_size=32, n_codebooks=5),
}


def reference(config: DacConfig, directory, seed=0):
    torch.manual_seed(seed)
    hf = transformers.DacModel(
        transformers.DacConfig(
            sampling_rate=config.sampling_rate, encoder_hidden_size=config.encoder_hidden_size,
            downsampling_ratios=list(config.downsampling_ratios), decoder_hidden_size=config.decoder_hidden_size,
            n_codebooks=config.n_codebooks, codebook_size=config.codebook_size, codebook_dim=config.codebook_dim,
        )
    ).eval()
    with torch.no_grad():
        for name, parameter in hf.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
            elif "codebook" in name:
                parameter.normal_()
    hf.save_pretrained(directory)
    return hf


def ours(directory, config, dtype=torch.float32):
    cfg, state = read_dac_checkpoint(directory, config)
    model = DacCodec(cfg)
    load_state(model, fold_weight_norm(state, dtype))
    return model.to(dtype).eval()


@pytest.mark.parametrize("variant", ["44k", "24k"])
def test_parity_small_configs(variant, tmp_path):
    config = SMALL[variant]
    hf = reference(config, tmp_path, seed=1)
    model = ours(tmp_path, config)
    audio = torch.randn(1, 1, config.hop_length * 7) * 0.3
    with torch.no_grad():
        codes_ref = hf.encode(audio).audio_codes
        codes = model.encode(audio)
        assert torch.equal(codes, codes_ref)
        audio_ref = hf.decode(audio_codes=codes_ref).audio_values
        decoded = model.decode(codes)
    expected_length = 7 * config.hop_length - (8 if variant == "24k" else 0)  # DAC 24/16 kHz: T·320 − 8
    assert decoded.shape[-1] == audio_ref.shape[-1] == expected_length
    assert max_rel_error(decoded[:, 0], audio_ref) <= 1e-5


def test_parity_44khz_published_size(tmp_path):
    hf = reference(DAC_44KHZ, tmp_path, seed=2)
    model = cs.load("dac-44khz", weights=tmp_path)
    audio = torch.randn(1, 1, 512 * 30) * 0.3
    with torch.no_grad():
        codes_ref = hf.encode(audio).audio_codes
        codes = model.encode(audio)
        assert codes.shape == (1, 9, 30) and torch.equal(codes, codes_ref)
        assert max_rel_error(model.decode(codes)[:, 0], hf.decode(audio_codes=codes_ref).audio_values) <= 1e-5


@pytest.mark.parametrize("variant", ["44k", "24k"])
def test_streaming_equals_offline_float64(variant, tmp_path):
    config = SMALL[variant]
    reference(config, tmp_path, seed=3)
    model = ours(tmp_path, config, torch.float64)
    audio = torch.randn(1, 1, config.hop_length * 9 - 77, dtype=torch.float64) * 0.3
    codes = model.encode(audio)
    decoded = model.decode(codes)
    for chunking in CHUNKINGS:
        sizes = chunk_sizes(audio.shape[-1], chunking if chunking != "ones" else "random", seed=4, max_size=7 if chunking == "ones" else 997)
        assert torch.equal(stream_all(model.encoder_stream(), audio, sizes), codes)
        frames = chunk_sizes(codes.shape[-1], chunking, seed=5, max_size=3)
        assert (stream_all(model.decoder_stream(), codes, frames) - decoded).abs().max() <= 1e-9


@pytest.mark.parametrize("variant, expected", [("44k", 4757), ("24k", 3141)])
def test_decoder_latency_delivered_and_minimal(variant, expected, tmp_path):
    config = SMALL[variant]
    reference(config, tmp_path, seed=6)
    model = ours(tmp_path, config, torch.float64)
    stream = model.decoder_stream()
    assert stream.latency_samples == expected
    hop, frames = config.hop_length, 24
    codes = torch.randint(0, 1024, (1, config.n_codebooks, frames))
    counts, total = [], 0
    for f in range(frames):
        total += stream.push(codes[..., f : f + 1]).shape[-1]
        counts.append(total)
    latencies = [g * hop - counts[g - 1] for g in range(1, frames) if counts[g] > counts[g - 1]]
    assert max(latencies) == expected
    latents = model.quantizer.decode(codes).detach()

    def network(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model.decoder(x, ctx), model.decoder.flush(ctx)], -1)

    g = 16
    first = counts[g - 1]  # the first sample frame g releases
    assert depends_on(network, latents, first, slice(g, g + 1))
    assert not depends_on(network, latents, first - 1, slice(g, None))


def test_bad_codes(tmp_path):
    model = DacCodec(SMALL["44k"])
    with pytest.raises(cs.CodeRangeError):
        model.decode(torch.full((1, 4, 3), 1024))
    with pytest.raises(cs.ShapeError, match="1 to 4"):
        model.decode(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(cs.OptionError, match="1 to 4"):
        model.encode(torch.zeros(1, 1, 512), n_codebooks=9)


def test_empty_pushes_return_empty_results():
    model = DacCodec(SMALL["44k"]).eval()
    decoder = model.decoder_stream()
    assert decoder.push(torch.zeros(1, 4, 0, dtype=torch.long)).shape == (1, 1, 0)
    encoder = model.encoder_stream()
    assert encoder.push(torch.zeros(1, 1, 0)).shape == (1, 4, 0)
    assert encoder.flush().shape == (1, 4, 0)


def test_original_release_layout_loads(tmp_path):
    """descript's ``weights.pth``: {"state_dict": module names as ours, "metadata": {"kwargs"}}."""
    config = SMALL["24k"]
    hf = reference(config, tmp_path / "hf", seed=7)
    _, plugin_state = read_dac_checkpoint(tmp_path / "hf", config)
    kwargs = {
        "sample_rate": 24000, "encoder_dim": 4, "encoder_rates": [2, 4, 5, 8], "decoder_dim": 32,
        "decoder_rates": [8, 5, 4, 2], "n_codebooks": 5, "codebook_size": 1024, "codebook_dim": 8,
    }
    torch.save({"state_dict": plugin_state, "metadata": {"kwargs": kwargs}}, tmp_path / "weights.pth")
    model = cs.load("dac-24khz", weights=tmp_path / "weights.pth")
    assert model.config == config
    audio = torch.randn(1, 1, 320 * 5) * 0.3
    with torch.no_grad():
        assert torch.equal(model.encode(audio), hf.encode(audio).audio_codes)
    with pytest.raises(cs.CheckpointMismatchError, match="24000 Hz DAC, not dac-44khz"):
        cs.load("dac-44khz", weights=tmp_path / "weights.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(cs.CheckpointError):
        cs.load("dac-24khz", weights=tmp_path / "broken.pth")
    # The seed card's loader: ``dac.json`` (the same constructor arguments) beside
    # ``dac.safetensors`` (the state dict, weight norm folded), through get_voco.
    seed = tmp_path / "seed"
    seed.mkdir()
    save_file({k: v.contiguous() for k, v in fold_weight_norm(plugin_state).items()}, seed / "dac.safetensors")
    (seed / "dac.json").write_text(json.dumps(kwargs))
    voco = cs.get_voco("dac-24khz", weights=str(seed))
    assert voco.codec.source.config == config
    latents = voco.encode(audio.transpose(1, 2))
    with torch.no_grad():
        assert max_rel_error(latents.transpose(1, 2), hf.encoder(audio)) <= 1e-5
    (seed / "dac.json").write_text(json.dumps({**kwargs, "encoder_rates": "fast"}))
    with pytest.raises(cs.CheckpointMismatchError, match="constructor arguments"):
        cs.load("dac-24khz", weights=seed)


def test_parity_with_descript_audio_codec(tmp_path):
    """The original package, its own ``save(package=False)`` file: the release layout."""
    dac = pytest.importorskip("dac", reason="a parity reference installed by .ci/setup (dev extra)")
    torch.manual_seed(8)
    reference_model = dac.DAC(
        encoder_dim=4, encoder_rates=[2, 4, 5, 8], decoder_dim=32, decoder_rates=[8, 5, 4, 2],
        n_codebooks=6, codebook_size=1024, codebook_dim=8, sample_rate=24000,
    ).eval()
    with torch.no_grad():
        for name, parameter in reference_model.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
            elif "codebook" in name:
                parameter.normal_()
    reference_model.save(str(tmp_path / "weights.pth"), package=False)
    model = cs.load("dac-24khz", weights=tmp_path / "weights.pth")
    assert model.config.n_codebooks == 6 and model.config.encoder_hidden_size == 4
    audio = torch.randn(1, 1, 320 * 9 - 50) * 0.3
    with torch.no_grad():
        z, codes_ref, *_ = reference_model.encode(reference_model.preprocess(audio, 24000))
        codes = model.encode(audio)
        assert torch.equal(codes, codes_ref)
        audio_ref = reference_model.decode(reference_model.quantizer.from_codes(codes_ref)[0])
        decoded = model.decode(codes)
        assert decoded.shape == audio_ref.shape == (1, 1, 9 * 320 - 8)
        assert max_rel_error(decoded, audio_ref) <= 1e-5
        # Fewer code-books: the leading ones, as the reference's n_quantizers.
        _, codes_ref_3, *_ = reference_model.encode(reference_model.preprocess(audio, 24000), n_quantizers=3)
        assert torch.equal(model.encode(audio, n_codebooks=3), codes_ref_3[:, :3])


def test_bench_reference_holds_our_weights():
    """`codecstream bench` compares with transformers' DacModel given our weights (export_state)."""
    from codecstream.models.dac.reference import reference_model

    torch.manual_seed(5)
    model = DacCodec(SMALL["24k"]).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
    hf = reference_model(model)
    audio = torch.randn(1, 1, 320 * 5) * 0.3
    with torch.no_grad():
        codes = model.encode(audio)
        assert torch.equal(hf.encode(audio).audio_codes, codes)
        assert max_rel_error(model.decode(codes), hf.decode(audio_codes=codes).audio_values[:, None]) <= 1e-5

"""Oobleck (Stable Audio Open's VAE): parity with diffusers' AutoencoderOobleck in both published
layouts (diffusers and stable-audio-tools), exact streaming, latency, bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, depends_on, encoder_release_points, max_rel_error, stream_all
from safetensors.torch import save_file

import codecstream as cs
from codecstream.models.oobleck import OOBLECK_SAO, OobleckCodec, OobleckConfig
from codecstream.models.oobleck.checkpoint import read_oobleck_checkpoint
from codecstream.weights import fold_weight_norm, load_state

diffusers = pytest.importorskip("diffusers", reason="a parity reference installed by .ci/setup (dev extra)")

# The published strides (so latencies are the real ones) at a few channels.
SMALL = OobleckConfig(encoder_hidden_size=8, channel_multiples=(1, 2, 2, 2, 2), decoder_channels=4, decoder_input_channels=4)
TINY = OobleckConfig(encoder_hidden_size=8, channel_multiples=(1, 2, 4), downsampling_ratios=(2, 4, 8), decoder_channels=4, decoder_input_channels=4)


def reference(config: OobleckConfig, directory, seed: int = 0):
    """diffusers' model with random weights (Snake log-scales drawn away from zero), saved."""
    if config.encoder_hidden_size != 2 * config.latent_dim:
        config = OobleckConfig(**{**config.__dict__, "encoder_hidden_size": 2 * config.latent_dim})
    torch.manual_seed(seed)
    model = diffusers.AutoencoderOobleck(
        encoder_hidden_size=config.encoder_hidden_size, downsampling_ratios=list(config.downsampling_ratios),
        channel_multiples=list(config.channel_multiples), decoder_channels=config.decoder_channels,
        decoder_input_channels=config.decoder_input_channels, audio_channels=config.audio_channels,
        sampling_rate=config.sampling_rate,
    ).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                parameter.uniform_(-0.5, 0.5)
    model.save_pretrained(directory)
    return model


def ours(directory, dtype=torch.float32) -> OobleckCodec:
    config, state = read_oobleck_checkpoint(directory, OOBLECK_SAO)
    model = OobleckCodec(config)
    load_state(model, fold_weight_norm(state, dtype))
    return model.to(dtype).eval()


def test_parity_small(tmp_path):
    config = OobleckConfig(encoder_hidden_size=8, channel_multiples=(1, 2, 4), downsampling_ratios=(2, 4, 8), decoder_channels=4, decoder_input_channels=4)
    ref = reference(config, tmp_path, seed=1)
    model = ours(tmp_path)
    audio = torch.randn(2, 2, 64 * 12 + 37) * 0.3
    with torch.no_grad():
        mean_ref = ref.encode(audio).latent_dist.mean
        latents = model.encode(audio)
        assert latents.shape == mean_ref.shape == (2, 4, 12)  # ⌊T / hop⌋, as the reference
        assert max_rel_error(latents, mean_ref) <= 1e-5
        audio_ref = ref.decode(mean_ref).sample
        decoded = model.decode(mean_ref)
    assert decoded.shape == audio_ref.shape == (2, 2, 12 * 64)
    assert max_rel_error(decoded, audio_ref) <= 1e-5


def test_parity_published_size(tmp_path):
    ref = reference(OOBLECK_SAO, tmp_path, seed=2)
    model = cs.load("oobleck", weights=tmp_path)
    assert model.config == OOBLECK_SAO
    audio = torch.randn(1, 2, 2048 * 3) * 0.3
    with torch.no_grad():
        mean_ref = ref.encode(audio).latent_dist.mean
        assert max_rel_error(model.encode(audio), mean_ref) <= 1e-5
        assert max_rel_error(model.decode(mean_ref), ref.decode(mean_ref).sample) <= 1e-5


def to_stable_audio_tools(state: dict[str, torch.Tensor], stages: int, prefix: str) -> dict[str, torch.Tensor]:
    """diffusers key names → stable-audio-tools' (``encoder.layers.N.layers.M.layers.K``), written
    from that repository's module tree, independently of the plugin's reader."""
    unit = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
        side, rest = m[1], m[2]
        if r := re.fullmatch(r"conv1\.(.+)", rest):
            new = f"0.{r[1]}"
        elif r := re.fullmatch(r"block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)", rest):
            offset = -1 if side == "encoder" else 1
            new = f"{int(r[1]) + 1}.layers.{int(r[2]) + offset}.layers.{unit[r[3]]}.{r[4]}"
        elif r := re.fullmatch(r"block\.(\d+)\.(snake1|conv1|conv_t1)\.(.+)", rest):
            index = {"snake1": 3, "conv1": 4} if side == "encoder" else {"snake1": 0, "conv_t1": 1}
            new = f"{int(r[1]) + 1}.layers.{index[r[2]]}.{r[3]}"
        elif r := re.fullmatch(r"snake1\.(.+)", rest):
            new = f"{stages + 1}.{r[1]}"
        else:
            r = re.fullmatch(r"conv2\.(.+)", rest)
            new = f"{stages + 2}.{r[1]}"
        if new.endswith(("alpha", "beta")):
            value = value.reshape(-1)  # SnakeBeta keeps [C]
        out[f"{prefix}{side}.layers.{new}"] = value.contiguous()
    return out


def test_stable_audio_tools_layout(tmp_path):
    """A whole Stable Audio model checkpoint: VAE under ``pretransform.model.``, other tensors
    ignored, hyper-parameters from ``model_config.json``."""
    config = OobleckConfig(encoder_hidden_size=8, channel_multiples=(1, 2, 4), downsampling_ratios=(2, 4, 8), decoder_channels=4, decoder_input_channels=4)
    ref = reference(config, tmp_path / "diffusers", seed=3)
    state = to_stable_audio_tools(ref.state_dict(), 3, "pretransform.model.")
    state["model.model.transformer.proj.weight"] = torch.zeros(3, 3)  # the diffusion model: not ours
    sat = tmp_path / "sat"
    sat.mkdir()
    save_file(state, sat / "model.safetensors")
    autoencoder = {
        "encoder": {"type": "oobleck", "config": {"in_channels": 2, "channels": 8, "c_mults": [1, 2, 4], "strides": [2, 4, 8], "latent_dim": 8, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 4, "c_mults": [1, 2, 4], "strides": [2, 4, 8], "latent_dim": 4, "use_snake": True, "final_tanh": False}},
        "bottleneck": {"type": "vae"}, "latent_dim": 4, "downsampling_ratio": 64, "io_channels": 2,
    }
    (sat / "model_config.json").write_text(json.dumps(
        {"model_type": "diffusion_cond", "sample_rate": 44100, "audio_channels": 2, "model": {"pretransform": {"type": "autoencoder", "config": autoencoder}}}
    ))
    model = cs.load("oobleck", weights=sat)
    assert model.config == config
    audio = torch.randn(1, 2, 64 * 6) * 0.3
    with torch.no_grad():
        mean_ref = ref.encode(audio).latent_dist.mean
        assert max_rel_error(model.encode(audio), mean_ref) <= 1e-5
        assert max_rel_error(model.decode(mean_ref), ref.decode(mean_ref).sample) <= 1e-5
    autoencoder["decoder"]["config"]["use_nearest_upsample"] = True
    (sat / "model_config.json").write_text(json.dumps({"sample_rate": 44100, "model": autoencoder}))
    with pytest.raises(cs.CheckpointMismatchError, match="nearest-neighbour"):
        cs.load("oobleck", weights=sat)


@pytest.fixture(scope="module")
def small64(tmp_path_factory):
    directory = tmp_path_factory.mktemp("oobleck")
    reference(SMALL, directory, seed=4)
    return ours(directory, torch.float64)


def test_streaming_equals_offline_float64(small64):
    model = small64
    audio = torch.randn(1, 2, 2048 * 11 + 301, dtype=torch.float64) * 0.3
    latents = model.encode(audio)
    decoded = model.decode(latents)
    assert latents.shape[-1] == 11 and decoded.shape[-1] == 11 * 2048
    for chunking in CHUNKINGS:
        if chunking == "ones":  # one sample at a time over 22 k samples is slow: a prefix of it
            sizes = [1] * 3000 + chunk_sizes(audio.shape[-1] - 3000, "random", seed=5, max_size=4000)
        else:
            sizes = chunk_sizes(audio.shape[-1], chunking, seed=5, max_size=4000)
        assert (stream_all(model.encoder_stream(), audio, sizes) - latents).abs().max() <= 1e-9
        frames = chunk_sizes(latents.shape[-1], chunking, seed=6, max_size=3)
        assert (stream_all(model.decoder_stream(), latents, frames) - decoded).abs().max() <= 1e-9


def test_latency_delivered_and_minimal(small64):
    model = small64
    hop = 2048
    decoder = model.decoder_stream()
    assert decoder.latency_samples == 18981  # 9.3 latent frames of lookahead, as measured on the reference
    frames = 20
    latents = torch.randn(1, 4, frames, dtype=torch.float64)
    counts, total = [], 0
    for f in range(frames):
        total += decoder.push(latents[..., f : f + 1]).shape[-1]
        counts.append(total)
    assert max(g * hop - counts[g - 1] for g in range(1, frames) if counts[g] > counts[g - 1]) == 18981

    def network(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model.decoder(x, ctx), model.decoder.flush(ctx)], -1)

    g = 14
    first = counts[g - 1]  # the first sample frame g releases
    assert depends_on(network, latents, first, slice(g, g + 1))
    assert not depends_on(network, latents, first - 1, slice(g, None))

    encoder = model.encoder_stream()
    released = encoder_release_points(model, encoder.latency_samples + 3 * hop)
    assert [r - j * hop for j, r in enumerate(released)] == [encoder.latency_samples] * len(released)
    audio = torch.randn(1, 2, released[-1] + hop, dtype=torch.float64)
    last = len(released) - 1
    assert depends_on(model.encoder, audio, last, slice(released[-1] - 1, released[-1]))
    assert not depends_on(model.encoder, audio, last, slice(released[-1], None))


def test_bad_input():
    model = OobleckCodec(TINY).eval()
    with pytest.raises(cs.ChannelError, match="2-channel"):
        model.encode(torch.zeros(1, 1, 640))
    with pytest.raises(cs.ShapeError, match=r"\[batch, 4, frames\] latents"):
        model.decode(torch.zeros(1, 64, 3))
    with pytest.raises(cs.NonFiniteError):
        model.decode(torch.full((1, 4, 3), float("nan")))
    with pytest.raises(cs.DTypeError):
        model.decode(torch.zeros(1, 4, 3, dtype=torch.long))
    assert model.decoder_stream().push(torch.zeros(1, 4, 0)).shape == (1, 2, 0)


def test_bench_reference_holds_our_weights():
    """`codecstream bench` compares with diffusers' AutoencoderOobleck given our weights."""
    from codecstream.models.oobleck.reference import reference_model

    torch.manual_seed(6)
    model = OobleckCodec(TINY).eval()
    reference = reference_model(model)
    audio = torch.randn(1, 2, TINY.hop_length * 6) * 0.3
    with torch.no_grad():
        latents = model.encode(audio)
        assert max_rel_error(latents, reference.encode(audio).latent_dist.mean) <= 1e-5
        assert max_rel_error(model.decode(latents), reference.decode(latents).sample) <= 1e-5


def test_posterior_sampling_is_keyed_on_position():
    """``sample=True`` (the seed's get_voco samples the posterior): noise keyed on (seed, row,
    frame), so any chunking draws what the offline encode draws, and the draws are N(0, 1)."""
    torch.manual_seed(8)
    model = OobleckCodec(TINY).to(torch.float64).eval()
    hop = TINY.hop_length
    audio = torch.randn(1, 2, hop * 300, dtype=torch.float64) * 0.3
    audio = torch.cat([audio, audio])  # two equal rows
    mean = model.encode(audio, pad_end=True)
    sampled = model.encode(audio, pad_end=True, sample=True, seed=3)
    assert torch.equal(sampled, model.encode(audio, pad_end=True, sample=True, seed=3))
    assert not torch.allclose(sampled[0], sampled[1])  # rows draw apart
    assert not torch.allclose(sampled, model.encode(audio, pad_end=True, sample=True, seed=4))
    with torch.no_grad():
        scale = model.encoder(audio)[:, TINY.latent_dim :]
    normal = (sampled - mean) / (torch.nn.functional.softplus(scale) + 1e-4)
    assert abs(float(normal.mean())) < 0.05 and abs(float(normal.std()) - 1) < 0.05
    for chunking in ["primes", "random"]:
        sizes = chunk_sizes(audio.shape[-1], chunking, seed=9, max_size=500)
        streamed = stream_all(model.encoder_stream(2, pad_end=True, sample=True, seed=3), audio, sizes)
        assert (streamed - sampled).abs().max() <= 1e-9, chunking
    voco = model.latents(sample=True, seed=3)
    assert (voco.encode(audio.transpose(1, 2)).transpose(1, 2) - sampled).abs().max() <= 1e-9
    with pytest.raises(cs.OptionError):
        model.latents(sample="yes")
    with pytest.raises(cs.OptionError):
        model.encoder_stream(seed=-1)

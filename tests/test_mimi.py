"""Mimi: parity with kyutai's moshi package (its own layout) and transformers' MimiModel (the
kyutai/mimi layout), exact streaming past the attention window, latency, bad codes."""

from __future__ import annotations

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, decoder_release_counts, depends_on, encoder_release_points, max_rel_error, stream_all
from safetensors.torch import save_file

import codecstream as cs
from codecstream.models.mimi import MIMI, MimiCodec, MimiConfig
from codecstream.models.mimi.checkpoint import read_mimi_checkpoint
from codecstream.weights import load_state

moshi_loaders = pytest.importorskip("moshi.models.loaders", reason="a parity reference installed by .ci/setup (dev extra)")
transformers = pytest.importorskip("transformers", reason="a parity reference installed by .ci/setup (dev extra)")

# The published architecture (strides, kernels, causal layout) at a few channels, with an
# attention window of 6 frames so that short tests run well past it.
SMALL = MimiConfig(
    dimension=16, n_filters=4, num_heads=2, num_layers=2, ff_dim=32, context=6,
    codebook_dim=8, codebook_size=32, num_codebooks=5, default_codebooks=4,
)


def moshi_reference(config: MimiConfig, seed: int):
    """moshi's MimiModel for ``config`` with every weight random (layer scales and code-book
    usage counts too)."""
    seanet = dict(
        moshi_loaders._seanet_kwargs, n_filters=config.n_filters, dimension=config.dimension, ratios=list(config.ratios)
    )
    transformer = dict(
        moshi_loaders._transformer_kwargs, d_model=config.dimension, num_heads=config.num_heads,
        num_layers=config.num_layers, dim_feedforward=config.ff_dim, context=config.context,
        input_dimension=config.dimension, output_dimensions=[config.dimension],
    )
    quantizer = dict(
        moshi_loaders._quantizer_kwargs, dimension=config.codebook_dim, n_q=config.num_codebooks,
        bins=config.codebook_size, input_dimension=config.dimension, output_dimension=config.dimension,
    )
    torch.manual_seed(seed)
    model = moshi_loaders.get_mimi(
        None, dict(moshi_loaders._mimi_config, seanet=seanet, transformer=transformer, quantizer=quantizer),
        num_codebooks=config.num_codebooks,
    )
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(".scale"):
                tensor.uniform_(0.2, 1.0)
            elif name.endswith("embedding_sum"):
                tensor.normal_()
            elif name.endswith("cluster_usage"):
                tensor.uniform_(0.5, 2.0)
            elif "norm" in name and name.endswith("weight"):
                tensor.uniform_(0.5, 1.5)
    return model.eval()


def save_moshi(model, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def ours(path, dtype=torch.float32, config: MimiConfig = MIMI) -> MimiCodec:
    cfg, state = read_mimi_checkpoint(path, config)
    model = MimiCodec(cfg)
    load_state(model, state)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    reference = moshi_reference(SMALL, seed=1)
    path = tmp_path_factory.mktemp("mimi") / "tokenizer-random.safetensors"
    save_moshi(reference, path)
    return reference, path


def test_parity_with_moshi_small(small_pair):
    reference, path = small_pair
    model = ours(path, config=SMALL)
    audio = torch.randn(2, 1, 1920 * 9) * 0.3  # 18 transformer frames: three times the window
    with torch.no_grad():
        codes_ref = reference.encode(audio)
        codes = model.encode(audio, n_codebooks=5)
        assert torch.equal(codes, codes_ref)
        decoded_ref = reference.decode(codes_ref)
        decoded = model.decode(codes)
    assert decoded.shape == decoded_ref.shape == (2, 1, 1920 * 9)
    assert max_rel_error(decoded, decoded_ref) <= 1e-5


def test_parity_with_moshi_published_size(tmp_path):
    reference = moshi_reference(MIMI, seed=2)
    reference.set_num_codebooks(8)
    save_moshi(reference, tmp_path / "tokenizer-e351c8d8-random.safetensors")
    model = cs.load("mimi", weights=tmp_path)
    audio = torch.randn(1, 1, 1920 * 4 + 700) * 0.3  # padded to 5 frames by both
    with torch.no_grad():
        codes_ref = reference.encode(audio)
        codes = model.encode(audio)
        assert codes.shape == (1, 8, 5) and torch.equal(codes, codes_ref)
        assert max_rel_error(model.decode(codes), reference.decode(codes_ref)) <= 1e-5


def hf_reference(config: MimiConfig, directory, seed: int):
    torch.manual_seed(seed)
    model = transformers.MimiModel(transformers.MimiConfig(
        hidden_size=config.dimension, num_filters=config.n_filters, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, head_dim=config.dimension // config.num_heads,
        num_hidden_layers=config.num_layers, intermediate_size=config.ff_dim, sliding_window=config.context,
        codebook_size=config.codebook_size, codebook_dim=config.codebook_dim,
        vector_quantization_hidden_dimension=config.codebook_dim, num_quantizers=config.num_codebooks,
        upsample_groups=config.dimension,
    )).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(".scale"):
                tensor.uniform_(0.2, 1.0)
            elif name.endswith("embed_sum"):
                tensor.normal_()
            elif name.endswith("cluster_usage"):
                tensor.uniform_(0.5, 2.0)
    model.save_pretrained(directory)
    return model


def test_parity_with_transformers_layout(tmp_path):
    reference = hf_reference(SMALL, tmp_path, seed=3)
    model = cs.load("mimi", weights=tmp_path)
    assert model.config == MimiConfig(**{**SMALL.__dict__, "default_codebooks": 5})
    audio = torch.randn(1, 1, 1920 * 5) * 0.3  # 10 transformer frames, within transformers' cache rules
    with torch.no_grad():
        codes_ref = reference.encode(audio, num_quantizers=5).audio_codes
        codes = model.encode(audio, n_codebooks=5)
        assert torch.equal(codes, codes_ref)
        decoded_ref = reference.decode(codes_ref).audio_values
        assert max_rel_error(model.decode(codes), decoded_ref) <= 1e-5


@pytest.fixture(scope="module")
def small64(small_pair):
    return ours(small_pair[1], torch.float64, config=SMALL)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_streaming_equals_offline_float64(small64, chunking):
    """40 transformer frames against a 6-frame window: the KV cache must hold exactly what
    later frames still see, for every chunking."""
    model = small64
    audio = torch.randn(1, 1, 1920 * 20 - 555, dtype=torch.float64) * 0.3
    codes = model.encode(audio, n_codebooks=5)
    decoded = model.decode(codes)
    sizes = chunk_sizes(audio.shape[-1], chunking, seed=4, max_size=5000)
    if chunking == "ones":  # one sample at a time for the first frames, then random
        sizes = [1] * 4000 + chunk_sizes(audio.shape[-1] - 4000, "random", seed=4, max_size=5000)
    assert torch.equal(stream_all(model.encoder_stream(n_codebooks=5), audio, sizes), codes)
    frames = chunk_sizes(codes.shape[-1], chunking, seed=5, max_size=4)
    assert (stream_all(model.decoder_stream(), codes, frames) - decoded).abs().max() <= 1e-9


def test_latency_one_frame_and_minimal(small64):
    model = small64
    encoder, decoder = model.encoder_stream(n_codebooks=5), model.decoder_stream()
    assert (encoder.latency_samples, decoder.latency_samples) == (1920, 0)  # 80 ms, as kyutai state
    released = encoder_release_points(model, 1920 * 6, n_codebooks=5)
    assert released == [1920 * (j + 1) for j in range(6)]
    audio = torch.randn(1, 1, 1920 * 8, dtype=torch.float64)

    def latents(x):
        ctx = cs.StreamContext(1)
        return model.encoder_path.step(x, ctx)

    assert depends_on(latents, audio, 3, slice(4 * 1920 - 1, 4 * 1920))
    assert not depends_on(latents, audio, 3, slice(4 * 1920, None))
    codes = torch.randint(0, 32, (1, 5, 8))
    assert decoder_release_counts(model, codes) == [1920 * (f + 1) for f in range(8)]


def test_codebooks_and_bad_codes(small64):
    model = small64
    audio = torch.randn(1, 1, 1920 * 3, dtype=torch.float64) * 0.3
    assert model.encode(audio).shape[1] == 4  # the config's default
    full = model.encode(audio, n_codebooks=5)
    assert torch.equal(model.encode(audio, n_codebooks=2), full[:, :2])  # RVQ prefixes
    with pytest.raises(cs.OptionError, match="1 to 5"):
        model.encode(audio, n_codebooks=6)
    with pytest.raises(cs.CodeRangeError):
        model.decode(torch.full((1, 4, 2), 32))
    with pytest.raises(cs.ShapeError):
        model.decode(torch.zeros(1, 6, 2, dtype=torch.long))
    assert model.decoder_stream().push(torch.zeros(1, 4, 0, dtype=torch.long)).shape == (1, 1, 0)


def test_not_a_mimi_checkpoint(tmp_path):
    save_file({"encoder.model.0.conv.conv.weight": torch.zeros(4, 1, 7)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(cs.CheckpointMismatchError, match="not a Mimi checkpoint"):
        cs.load("mimi", weights=tmp_path / "x.safetensors")

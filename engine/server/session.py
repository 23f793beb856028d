"""One client's streams on a shared model: wire data in, wire data out."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import torch

from ..errors import CodecStreamError
from ..runtime.resample import StreamResampler
from .protocol import Hello, ProtocolError, Ready

__all__ = ["Session", "codes_to_wire", "codes_from_wire"]


def codes_to_wire(codes: Any) -> list[np.ndarray]:
    """A model's codes for batch item 0 as protocol levels: a tensor ``[1, K, T]`` becomes one
    ``[K, T]`` level; a list of ``[1, T_l]`` tensors (SNAC) one ``[1, T_l]`` level each."""
    if isinstance(codes, (list, tuple)):
        return [level[0].detach().cpu().numpy()[None] for level in codes]
    return [codes[0].detach().cpu().numpy()]


def codes_from_wire(model: Any, levels: list[np.ndarray]) -> Any:
    """Protocol levels → what the model's decoder takes (validated by the model)."""
    tensors = [torch.from_numpy(np.array(level)) for level in levels]
    if isinstance(model.empty_codes(1, None), (list, tuple)):
        return [t.reshape(1, -1).long() for t in tensors]
    if len(tensors) != 1:
        raise ProtocolError("bad_codes", f"{model.name} takes one level of codes, got {len(tensors)}")
    return tensors[0][None] if tensors[0].is_floating_point() else tensors[0][None].long()


def _fit_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    if samples.shape[1] == channels:
        return samples
    if channels == 1:
        return samples.mean(axis=1, keepdims=True)
    return np.repeat(samples[:, :1], channels, axis=1)


class Session:
    """Streams for one connection. ``process`` and ``finish`` run on the compute thread and
    return a list of outgoing items: ``("audio", [n, channels] float32)`` or ``("codes", levels)``."""

    def __init__(self, model: Any, hello: Hello) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.model = model
        self.hello = hello
        self.direction = hello.direction
        options = dict(hello.options)
        encoder_options = {k: options.pop(k) for k in list(options) if k in ("bandwidth",)}
        try:
            self.encoder = model.encoder_stream(1, **encoder_options) if hello.direction != "codes->audio" else None
            self.decoder = model.decoder_stream(1, **options) if hello.direction != "audio->codes" else None
        except CodecStreamError as exc:
            raise ProtocolError("bad_hello", f"{type(exc).__name__}: {exc}") from None
        if hello.direction == "audio->codes" and options:
            raise ProtocolError("bad_hello", f"unknown options {sorted(options)}")
        self._in = StreamResampler(hello.sample_rate, model.sample_rate, model.channels) if self.encoder else None
        self._out = StreamResampler(model.sample_rate, hello.sample_rate, model.channels) if self.decoder else None
        self.audio_in_s = 0.0
        self.compute_s = 0.0
        self.samples_in = 0  # client-rate samples received (audio directions)
        self.samples_out = 0  # client-rate samples sent

    def ready(self) -> Ready:
        latency = 0.0
        if self.encoder is not None:
            latency += self.encoder.latency_ms
        if self.decoder is not None:
            latency += self.decoder.latency_ms
        spec = self.model.token_spec
        levels = [] if spec is None else [
            {"codebooks": level.num_codebooks, "codebook_size": level.codebook_size, "frame_rate": level.frame_rate}
            for level in spec.levels
        ]
        return Ready(
            model=self.model.name, direction=self.direction, sample_rate=self.hello.sample_rate,
            model_sample_rate=self.model.sample_rate, frame_rate=self.model.frame_rate, latency_ms=latency,
            code_levels=levels, session=self.id,
        )

    # -- compute thread -------------------------------------------------------------------
    def _decode(self, codes: Any, out: list[tuple[str, Any]]) -> None:
        audio = self.decoder.push(codes)  # type: ignore[union-attr]
        self._emit_audio(audio, out)

    def _emit_audio(self, audio: torch.Tensor, out: list[tuple[str, Any]], *, last: bool = False) -> None:
        samples = audio[0].T.to(torch.float32).cpu().numpy()
        samples = self._out.process(samples, last=last)  # type: ignore[union-attr]
        samples = _fit_channels(samples, self.hello.channels)
        if self.direction == "audio->audio":  # never longer than the input, like offline roundtrips
            samples = samples[: max(0, self.samples_in - self.samples_out)]
        if len(samples):
            self.samples_out += len(samples)
            out.append(("audio", samples))

    def _encode(self, codes: Any, out: list[tuple[str, Any]]) -> None:
        if self.direction == "audio->codes":
            if self.model.num_frames(codes):
                out.append(("codes", codes_to_wire(codes)))
        else:
            self._decode(codes, out)

    def process_audio(self, samples: np.ndarray) -> list[tuple[str, Any]]:
        if self.encoder is None:
            raise ProtocolError("unexpected", "this session decodes codes; it takes no audio")
        out: list[tuple[str, Any]] = []
        self.samples_in += len(samples)
        self.audio_in_s += len(samples) / self.hello.sample_rate
        block = self._in.process(_fit_channels(samples, self.model.channels))  # type: ignore[union-attr]
        audio = torch.from_numpy(np.ascontiguousarray(block.T))[None].to(self.model.dtype)
        with torch.inference_mode():
            self._encode(self.encoder.push(audio), out)
        return out

    def process_codes(self, levels: list[np.ndarray]) -> list[tuple[str, Any]]:
        if self.direction != "codes->audio":
            raise ProtocolError("unexpected", f"this session is {self.direction}; it takes no codes")
        out: list[tuple[str, Any]] = []
        codes = codes_from_wire(self.model, levels)
        with torch.inference_mode():
            self._decode(codes, out)
        self.audio_in_s += self.model.num_frames(codes) * self.model.hop_length / self.model.sample_rate
        return out

    def finish(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        with torch.inference_mode():
            if self.encoder is not None:
                tail = self._in.flush()  # type: ignore[union-attr]
                audio = torch.from_numpy(np.ascontiguousarray(tail.T))[None].to(self.model.dtype)
                codes = self.model.concat_codes([self.encoder.push(audio), self.encoder.flush()])
                self._encode(codes, out)
            if self.decoder is not None:
                self._emit_audio(self.decoder.flush(), out, last=True)
        return out


"""The one bridge between the outside world and a model's streams.

Outside, audio is NumPy ``[n, channels]`` float32 at whatever rate and channel count a device,
a file or a WebSocket client has; inside, a model's encoder and decoder streams take
``[1, channels, n]`` tensors at the model's rates. :class:`Transcoder` converts rates (streaming
soxr, no clicks at seams), channels (mix down or repeat), layout and dtype both ways, pushes
through the streams of one direction, and flushes everything at the end. The real-time
pipeline and the server's sessions both use it, so the conversions are written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .resample import StreamResampler

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["Transcoder", "fit_channels", "DIRECTIONS"]

DIRECTIONS = ("audio->codes", "codes->audio", "audio->audio")


def fit_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """``[n, c]`` → ``[n, channels]``: mono is the mean of the channels, more channels repeat
    the first."""
    if samples.shape[1] == channels:
        return samples
    if channels == 1:
        return samples.mean(axis=1, keepdims=True)
    return np.repeat(samples[:, :1], channels, axis=1)


class Transcoder:
    """Outside audio or codes in, codes or outside audio out, through one model's streams.

    Args:
        model: the codec or vocoder.
        direction: ``"audio->audio"`` (encoder then decoder), ``"audio->codes"`` or
            ``"codes->audio"``.
        input_rate, input_channels: of the audio pushed in (default: the model's).
        output_rate, output_channels: of the audio returned (default: the input's).
        encoder_options, decoder_options: passed to the model's streams (validated there).
        trim_to_input: ``audio->audio`` returns at most as many samples as came in, like an
            offline roundtrip (the decoder's flush can give a little more).

    Raises:
        OptionError and the other input errors of the model's streams.
    """

    def __init__(
        self,
        model: "Codec",
        direction: str = "audio->audio",
        *,
        input_rate: int | None = None,
        input_channels: int | None = None,
        output_rate: int | None = None,
        output_channels: int | None = None,
        encoder_options: dict[str, Any] | None = None,
        decoder_options: dict[str, Any] | None = None,
        trim_to_input: bool = False,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.model = model
        self.direction = direction
        self.input_rate = input_rate or model.encoder_sample_rate
        self.input_channels = input_channels or model.channels
        self.output_rate = output_rate or input_rate or model.sample_rate
        self.output_channels = output_channels or self.input_channels
        self.trim_to_input = trim_to_input and direction == "audio->audio"
        self.encoder = model.encoder_stream(1, **(encoder_options or {})) if direction != "codes->audio" else None
        self.decoder = model.decoder_stream(1, **(decoder_options or {})) if direction != "audio->codes" else None
        self._in = StreamResampler(self.input_rate, model.encoder_sample_rate, model.channels) if self.encoder else None
        self._out = StreamResampler(model.sample_rate, self.output_rate, model.channels) if self.decoder else None
        self.samples_in = 0  # input-rate samples pushed
        self.samples_out = 0  # output-rate samples returned

    @property
    def resampler_delay_s(self) -> float:
        """What the two rate converters hold back, in seconds."""
        delay = 0.0
        if self._in is not None:
            delay += self._in.delay_samples / self.model.encoder_sample_rate
        if self._out is not None:
            delay += self._out.delay_samples / self.output_rate
        return delay

    @property
    def latency_samples(self) -> int:
        """The streams' algorithmic latency, in model-rate samples (encoder plus decoder)."""
        return (self.encoder.latency_samples if self.encoder else 0) + (self.decoder.latency_samples if self.decoder else 0)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.model.sample_rate

    # -- pushing ----------------------------------------------------------------------------
    def push_audio(self, samples: np.ndarray) -> Any:
        """``samples``: ``[n, input_channels]`` float32 at ``input_rate``. Returns the model's
        codes (``audio->codes``) or ``[m, output_channels]`` float32 audio."""
        if self.encoder is None:
            raise ValueError("this transcoder decodes codes; push_codes()")
        self.samples_in += len(samples)
        block = self._in.process(fit_channels(samples, self.model.channels))  # type: ignore[union-attr]
        with torch.inference_mode():
            return self._after_encoder(self.encoder.push(self._tensor(block)))

    def push_codes(self, codes: Any) -> np.ndarray:
        """The model's codes (as its decoder takes them) → ``[m, output_channels]`` audio."""
        if self.encoder is not None or self.decoder is None:
            raise ValueError(f"this transcoder is {self.direction}; it takes no codes")
        with torch.inference_mode():
            return self._audio(self.decoder.push(codes))

    def finish(self) -> Any:
        """End the streams and return the rest (codes or audio, as the pushes did)."""
        with torch.inference_mode():
            if self.encoder is not None:
                tail = self._tensor(self._in.flush())  # type: ignore[union-attr]
                codes = self.model.concat_codes([self.encoder.push(tail), self.encoder.flush()])
                if self.decoder is None:
                    return codes
                head = self._audio(self.decoder.push(codes))
                return np.concatenate([head, self._audio(self.decoder.flush(), last=True)])
            return self._audio(self.decoder.flush(), last=True)  # type: ignore[union-attr]

    # -- conversions ------------------------------------------------------------------------
    def _tensor(self, block: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(block.T))[None].to(self.model.dtype)

    def _after_encoder(self, codes: Any) -> Any:
        return codes if self.decoder is None else self._audio(self.decoder.push(codes))

    def _audio(self, audio: Tensor, *, last: bool = False) -> np.ndarray:
        samples = audio[0].T.to(torch.float32).cpu().numpy()
        samples = fit_channels(self._out.process(samples, last=last), self.output_channels)  # type: ignore[union-attr]
        if self.trim_to_input:  # never longer than the input, like offline roundtrips
            samples = samples[: max(0, self.samples_in * self.output_rate // self.input_rate - self.samples_out)]
        self.samples_out += len(samples)
        return samples

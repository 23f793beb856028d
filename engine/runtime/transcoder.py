"""The one bridge between the outside world and a model's streams.

Outside, audio is NumPy ``[n, channels]`` float32 at whatever rate and channel count a device,
a file or a WebSocket client has; inside, a model's encoder and decoder streams take
``[1, channels, n]`` tensors at the model's rates. :class:`Transcoder` converts rates (streaming
soxr, no clicks at seams), channels (mix down or repeat), layout and dtype both ways, pushes
through the streams of one direction, and flushes everything at the end. The real-time
pipeline and the server's sessions both use it, so the conversions are written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor

from .resample import StreamResampler

if TYPE_CHECKING:
    from ..plugin import Codec
    from .scheduler import GroupScheduler

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
        scheduler: compute in that scheduler's stream groups (batched with other lanes): the
            pushes only queue input, and each tick hands this lane's output to ``deliver``.
        deliver: with ``scheduler``, called with each tick's output (codes or audio).

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
        scheduler: "GroupScheduler | None" = None,
        deliver: "Callable[[Any], None] | None" = None,
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
        self.scheduler = scheduler
        self.deliver = deliver
        self.encoder: Any = None
        self.decoder: Any = None
        if scheduler is None:
            self.encoder = model.encoder_stream(1, **(encoder_options or {})) if direction != "codes->audio" else None
            self.decoder = model.decoder_stream(1, **(decoder_options or {})) if direction != "audio->codes" else None
        else:
            if direction != "codes->audio":
                self.encoder = scheduler.group(model, "encoder", dict(encoder_options or {})).open()
            if direction != "audio->codes":
                shared = {k: v for k, v in (decoder_options or {}).items() if k not in model.row_options}
                per_row = {k: v for k, v in (decoder_options or {}).items() if k in model.row_options}
                self.decoder = scheduler.group(model, "decoder", shared).open(**per_row)
            self._codes_out: list[Any] = []
            scheduler.add(self)
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
        if self.scheduler is not None and self.encoder is not None and self.decoder is not None:
            # The encoder's group hands over whole blocks: the decoder's block never waits.
            return self.encoder.latency_samples + self.decoder.group.solo_latency_samples  # type: ignore[no-any-return]
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
        if self.scheduler is not None:
            self.encoder.push(self._tensor(block))
            return self._nothing()
        with torch.inference_mode():
            return self._after_encoder(self.encoder.push(self._tensor(block)))

    def push_codes(self, codes: Any) -> np.ndarray:
        """The model's codes (as its decoder takes them) → ``[m, output_channels]`` audio."""
        if self.encoder is not None or self.decoder is None:
            raise ValueError(f"this transcoder is {self.direction}; it takes no codes")
        if self.scheduler is not None:
            self.decoder.push(codes)
            return self._nothing()
        with torch.inference_mode():
            return self._audio(self.decoder.push(codes))

    def finish(self) -> Any:
        """End the streams and return the rest (codes or audio, as the pushes did)."""
        if self.scheduler is not None:
            return self._finish_grouped()
        with torch.inference_mode():
            if self.encoder is not None:
                tail = self._tensor(self._in.flush())  # type: ignore[union-attr]
                codes = self.model.concat_codes([self.encoder.push(tail), self.encoder.flush()])
                if self.decoder is None:
                    return codes
                head = self._audio(self.decoder.push(codes))
                return np.concatenate([head, self._audio(self.decoder.flush(), last=True)])
            return self._audio(self.decoder.flush(), last=True)  # type: ignore[union-attr]

    # -- in a scheduler's groups ------------------------------------------------------------
    def pump(self) -> None:
        """After the encoder groups' tick: this lane's new codes go to its decoder (or wait
        for :meth:`deliver_output`)."""
        if self.encoder is None:
            return
        codes = self.encoder.pull()
        if self.model.num_frames(codes):
            if self.decoder is not None:
                self.decoder.push(codes)
            else:
                self._codes_out.append(codes)

    def deliver_output(self) -> None:
        """After the decoder groups' tick: hand what is new to ``deliver``."""
        if self.decoder is not None:
            audio = self._audio(self.decoder.pull())
            if len(audio) and self.deliver is not None:
                self.deliver(audio)
        elif self._codes_out:
            codes = self.model.concat_codes(self._codes_out)
            self._codes_out = []
            if self.deliver is not None:
                self.deliver(codes)

    @property
    def backlog_s(self) -> float:
        """Input queued in the groups and not computed yet, in seconds."""
        if self.encoder is not None:
            return self.encoder.queued / self.model.encoder_sample_rate  # type: ignore[no-any-return]
        if self.decoder is not None and hasattr(self.decoder, "queued"):
            return self.decoder.queued / self.model.frame_rate  # type: ignore[no-any-return]
        return 0.0

    def close(self) -> None:
        """Leave the scheduler's groups without flushing (the client went away)."""
        if self.scheduler is not None:
            for stream in (self.encoder, self.decoder):
                if stream is not None:
                    stream.close()
            self.scheduler.remove(self)

    def _finish_grouped(self) -> Any:
        """Each stream leaves its group and ends as a solo stream does."""
        if self.scheduler is not None:
            self.scheduler.remove(self)
        with torch.inference_mode():
            if self.encoder is not None:
                self.encoder.push(self._tensor(self._in.flush()))  # type: ignore[union-attr]
                codes = self.model.concat_codes([*self._codes_out, self.encoder.flush()])
                self._codes_out = []
                if self.decoder is None:
                    return codes
                self.decoder.push(codes)
            return self._audio(self.decoder.flush(), last=True)

    def _nothing(self) -> Any:
        if self.direction == "audio->codes":
            return self.model.empty_codes(1, self.encoder.options)
        return np.zeros((0, self.output_channels), np.float32)

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

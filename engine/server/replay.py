"""A TTS token stream for the browser client's TTS tab, as ``codecstream tts-play`` makes it:
speech (espeak-ng) encoded by the layout's codec, cut into the messages a TTS language model's
tokens become (Orpheus: one SNAC 24 kHz frame of 7 tokens; Bark: one EnCodec 24 kHz frame of 8
code-books at 6 kbps). The page replays them at token pace through a codes->audio session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..io.speech import speak

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["REPLAY_LAYOUTS", "MAX_REPLAY_TEXT", "replay_messages"]

#: Layout -> the codec its tokens are codes of.
REPLAY_LAYOUTS = {"orpheus": "snac-24khz", "bark": "encodec-24khz"}
#: Characters of text a replay may speak (about 12 s of speech): bounded work per request.
MAX_REPLAY_TEXT = 200


def replay_messages(model: "Codec", layout: str, text: str) -> dict[str, Any]:
    """``messages``: per LM frame, the codes message's levels (``[rows][frames]`` ints);
    ``tokens_per_message`` and ``token_rate`` (tokens per second that decode in real time)."""
    audio, _ = speak(text[:MAX_REPLAY_TEXT], sample_rate=model.sample_rate)
    with torch.inference_mode():
        if layout == "orpheus":  # SNAC levels at 1, 2 and 4 codes per coarse frame
            levels = [level[0].tolist() for level in model.encode(audio)]
            messages = [[[levels[k][(2**k) * i : (2**k) * (i + 1)]] for k in range(3)] for i in range(len(levels[0]))]
            per_message = 7
            token_rate = 7 * model.sample_rate / (4 * model.hop_length)
        else:  # Bark's fine tokens: 8 EnCodec code-books per frame
            codes = model.encode(audio, bandwidth=6.0)[0]
            messages = [[[[int(code)] for code in codes[:, i]]] for i in range(codes.shape[-1])]
            per_message = 8
            token_rate = 8 * model.frame_rate
    return {
        "layout": layout, "model": model.name, "messages": messages, "tokens_per_message": per_message,
        "token_rate": token_rate, "sample_rate": model.sample_rate, "samples_per_message": model.hop_length * (4 if layout == "orpheus" else 1),
    }

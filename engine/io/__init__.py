"""Audio in and out: files now; devices, token sources and sinks in the runtime."""

from .wav import read_audio, write_audio

__all__ = ["read_audio", "write_audio"]

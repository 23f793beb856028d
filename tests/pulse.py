"""A private PulseAudio server with virtual devices, for tests that need real audio I/O.

- ``spk``: null sink the programs play to (record ``spk.monitor``);
- ``micfeed`` + ``mic``: play a file into ``micfeed`` and programs hear it on ``mic``;
- ``probe``: a stereo sink fed by two identical loopbacks, ``micfeed.monitor`` on the left and
  ``spk.monitor`` on the right, so one recording of ``probe.monitor`` times input against
  output (the two loopbacks agree within a few samples, checked at start).

All sinks run at one rate (the model's), float32, so no resampling happens in the server.
ALSA names ``pa_mic``, ``pa_spk``, ``pa_spkmon`` reach the devices through PortAudio.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np


class PulseServer:
    def __init__(self, directory: Path, rate: int = 22050) -> None:
        self.directory = directory
        self.rate = rate
        self.socket = directory / "native"
        self.env = dict(os.environ)
        self.env.update(
            HOME=str(directory / "home"),
            XDG_RUNTIME_DIR=str(directory / "run"),
            XDG_CONFIG_HOME=str(directory / "config"),
            PULSE_SERVER=f"unix:{self.socket}",
        )
        self._processes: list[subprocess.Popen] = []
        self._server: subprocess.Popen | None = None

    def start(self) -> "PulseServer":
        for sub in ("home", "run", "config/alsa"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        sink = f"rate={self.rate} format=float32le"
        (self.directory / "default.pa").write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            f"load-module module-null-sink sink_name=spk channels=1 {sink}\n"
            f"load-module module-null-sink sink_name=micfeed channels=1 {sink}\n"
            "load-module module-remap-source master=micfeed.monitor source_name=mic\n"
            f"load-module module-null-sink sink_name=probe channels=2 channel_map=front-left,front-right {sink}\n"
            "load-module module-loopback source=micfeed.monitor sink=probe channel_map=front-left latency_msec=1 adjust_time=0\n"
            "load-module module-loopback source=spk.monitor sink=probe channel_map=front-right latency_msec=1 adjust_time=0\n"
            "set-default-sink spk\nset-default-source mic\n"
        )
        (self.directory / "config" / "alsa" / "asoundrc").write_text(
            'pcm.pa_mic { type pulse device "mic" }\npcm.pa_spk { type pulse device "spk" }\npcm.pa_spkmon { type pulse device "spk.monitor" }\n'
        )
        self._server = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(self.directory / "default.pa"), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("PulseAudio did not start")
            time.sleep(0.05)
        # Without a reader an idle null sink sleeps in 2 s blocks and new streams start late.
        for monitor in ("spk.monitor", "micfeed.monitor"):
            self._processes.append(
                subprocess.Popen(["parec", "--latency-msec=10", "-d", monitor, "--raw"], env=self.env, stdout=subprocess.DEVNULL)
            )
        return self

    def play(self, path: Path, device: str = "micfeed") -> subprocess.Popen:
        return subprocess.Popen(["paplay", f"--device={device}", str(path)], env=self.env)

    def record(self, device: str, path: Path, channels: int = 1) -> subprocess.Popen:
        handle = open(path, "wb")
        process = subprocess.Popen(
            ["parec", "-d", device, f"--rate={self.rate}", f"--channels={channels}", "--format=float32le", "--latency-msec=5", "--raw"],
            env=self.env, stdout=handle,
        )
        process.output = handle  # type: ignore[attr-defined]
        return process

    @staticmethod
    def stop_recording(process: subprocess.Popen, channels: int = 1) -> np.ndarray:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=5)
        process.output.close()  # type: ignore[attr-defined]
        data = np.fromfile(process.output.name, dtype=np.float32)  # type: ignore[attr-defined]
        return data[: len(data) // channels * channels].reshape(-1, channels)

    def stop(self) -> None:
        for process in self._processes:
            process.kill()
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._server.kill()


def available() -> bool:
    return all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "paplay", "parec"))

// Playback with a jitter buffer: holds `prefill` samples before starting, plays silence (and
// counts an underrun) when the buffer runs dry, then waits for the prefill again.
class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { capacity, prefill } = options.processorOptions;
    this.buffer = new Float32Array(capacity);
    this.read = 0; this.write = 0; this.count = 0;
    this.prefill = prefill; this.playing = false; this.underruns = 0; this.played = 0;
    this.port.onmessage = (event) => this.push(event.data);
    this.reportEvery = Math.round(sampleRate / 10); this.sinceReport = 0;
  }
  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      if (this.count === this.buffer.length) { this.read = (this.read + 1) % this.buffer.length; this.count--; }
      this.buffer[this.write] = samples[i];
      this.write = (this.write + 1) % this.buffer.length;
      this.count++;
    }
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.count >= this.prefill) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (this.playing && this.count > 0) {
        out[i] = this.buffer[this.read];
        this.read = (this.read + 1) % this.buffer.length;
        this.count--; this.played++;
      } else {
        out[i] = 0;
        if (this.playing) { this.playing = false; this.underruns++; }
      }
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= this.reportEvery) {
      this.sinceReport = 0;
      this.port.postMessage({ buffered: this.count, underruns: this.underruns, played: this.played });
    }
    return true;
  }
}
registerProcessor("playback", Playback);

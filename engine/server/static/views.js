// What the page draws and keeps: spectrograms, the latency graph, WAV files. No dependencies.
"use strict";

// Spectrogram frames: 512-sample Hann windows every 256 samples, log10 power per bin
// (10·log10(|X|² + 1e-10), bins 0..256), the same definition tests compute offline.
const FFT_SIZE = 512, HOP = 256;

function fftPower(frame) {
  const n = frame.length, re = new Float64Array(n), im = new Float64Array(n);
  for (let i = 0; i < n; i++) re[i] = frame[i] * (0.5 - 0.5 * Math.cos(2 * Math.PI * i / n));
  for (let i = 1, j = 0; i < n; i++) {  // bit reversal
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = -2 * Math.PI / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(step * k), wi = Math.sin(step * k);
        const a = start + k, b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
      }
    }
  }
  const power = new Float32Array(n / 2 + 1);
  for (let k = 0; k <= n / 2; k++) power[k] = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-10);
  return power;
}

class Spectrogram {
  constructor(canvas, keep) {
    this.canvas = canvas; this.context = canvas.getContext("2d");
    this.pending = new Float32Array(0); this.frames = []; this.keep = keep;
    this.context.fillStyle = "#111"; this.context.fillRect(0, 0, canvas.width, canvas.height);
  }
  push(samples) {
    const joined = new Float32Array(this.pending.length + samples.length);
    joined.set(this.pending); joined.set(samples, this.pending.length);
    let start = 0;
    for (; start + FFT_SIZE <= joined.length; start += HOP) this.draw(fftPower(joined.subarray(start, start + FFT_SIZE)));
    this.pending = joined.slice(start);
  }
  draw(power) {
    if (this.frames.length < this.keep) this.frames.push(power);
    const { canvas, context } = this, h = canvas.height;
    context.drawImage(canvas, -1, 0);  // scroll one column left
    const column = context.createImageData(1, h);
    for (let y = 0; y < h; y++) {
      const bin = Math.floor((h - 1 - y) * (power.length - 1) / (h - 1));
      const v = Math.max(0, Math.min(1, (power[bin] + 60) / 80));  // -60 .. +20 dB
      const i = 4 * y;
      column.data[i] = 255 * Math.min(1, 1.6 * v); column.data[i + 1] = 255 * Math.max(0, 1.6 * v - 0.6);
      column.data[i + 2] = 80 * (1 - v); column.data[i + 3] = 255;
    }
    context.putImageData(column, canvas.width - 1, 0);
  }
}

// Round trip and playback buffer over the last `span` points, underruns as red ticks, the
// model's algorithmic latency as a grey line.
class LatencyGraph {
  constructor(canvas, span) { this.canvas = canvas; this.context = canvas.getContext("2d"); this.points = []; this.span = span; this.latency = null; }
  add(point) { this.points.push(point); if (this.points.length > this.span) this.points.shift(); this.draw(); }
  draw() {
    const { canvas, context, points } = this, w = canvas.width, h = canvas.height;
    context.clearRect(0, 0, w, h);
    const top = Math.max(200, ...points.map((p) => Math.max(p.rtt || 0, p.buffer || 0)), this.latency || 0) * 1.1;
    const y = (ms) => h - 14 - (h - 24) * ms / top;
    const x = (i) => 40 + (w - 50) * i / Math.max(1, this.span - 1);
    context.fillStyle = "#666"; context.font = "11px system-ui";
    for (const ms of [0, top / 2, top]) context.fillText(Math.round(ms) + " ms", 0, y(ms) + 4);
    if (this.latency !== null) {
      context.strokeStyle = "#999"; context.setLineDash([4, 3]); context.beginPath();
      context.moveTo(40, y(this.latency)); context.lineTo(w, y(this.latency)); context.stroke(); context.setLineDash([]);
    }
    for (const [key, color] of [["rtt", "#2a6fdb"], ["buffer", "#3a7"]]) {
      context.strokeStyle = color; context.lineWidth = 1.5; context.beginPath();
      let started = false;
      points.forEach((p, i) => {
        if (p[key] === null || p[key] === undefined) return;
        if (started) context.lineTo(x(i), y(p[key])); else { context.moveTo(x(i), y(p[key])); started = true; }
      });
      context.stroke();
    }
    context.strokeStyle = "#b00";
    points.forEach((p, i) => { if (p.underrun) { context.beginPath(); context.moveTo(x(i), 0); context.lineTo(x(i), h - 14); context.stroke(); } });
  }
}

// Growing mono recording, kept in blocks.
class Recording {
  constructor(limit) { this.blocks = []; this.starts = []; this.length = 0; this.limit = limit; }
  push(samples) {
    if (this.length + samples.length > this.limit) return;
    this.blocks.push(samples.slice(0)); this.starts.push(this.length); this.length += samples.length;
  }
  range(start, end) {  // samples [start, end), zeros where not recorded; found by bisection (A/B runs it per message)
    const out = new Float32Array(end - start);
    let low = 0, high = this.blocks.length;
    while (high - low > 1) { const mid = (low + high) >> 1; if (this.starts[mid] <= start) low = mid; else high = mid; }
    for (let i = low; i < this.blocks.length && this.starts[i] < end; i++) {
      const block = this.blocks[i], offset = this.starts[i];
      const a = Math.max(start, offset), b = Math.min(end, offset + block.length);
      if (a < b) out.set(block.subarray(a - offset, b - offset), a - start);
    }
    return out;
  }
  wav(rate) {  // 16-bit PCM WAV
    const data = new DataView(new ArrayBuffer(44 + 2 * this.length));
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) data.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF"); data.setUint32(4, 36 + 2 * this.length, true); text(8, "WAVE"); text(12, "fmt ");
    data.setUint32(16, 16, true); data.setUint16(20, 1, true); data.setUint16(22, 1, true);
    data.setUint32(24, rate, true); data.setUint32(28, 2 * rate, true); data.setUint16(32, 2, true); data.setUint16(34, 16, true);
    text(36, "data"); data.setUint32(40, 2 * this.length, true);
    let offset = 44;
    for (const block of this.blocks) for (let i = 0; i < block.length; i++, offset += 2) {
      data.setInt16(offset, Math.round(Math.max(-1, Math.min(1, block[i])) * 32767), true);
    }
    return new Blob([data.buffer], { type: "audio/wav" });
  }
}

// codecstream browser client: microphone → WebSocket → server model → WebSocket → speakers.
// The AudioContext runs at the model's sample rate, so the browser resamples the microphone.
"use strict";
const $ = (id) => document.getElementById(id);
const KIND = { CONTROL: 1, PCM16: 2, F32: 3, CODES: 4, ERROR: 5 };
const CHUNK_MS = 20;
window.codecstream = { sent: 0, received: 0, receivedSamples: 0, underruns: 0, ready: null, errors: [], ended: false };
let session = null;

function control(payload) {
  const text = new TextEncoder().encode(JSON.stringify(payload));
  const message = new Uint8Array(1 + text.length);
  message[0] = KIND.CONTROL; message.set(text, 1);
  return message;
}

function pcm16(samples, sequence) {
  const message = new DataView(new ArrayBuffer(5 + 2 * samples.length));
  message.setUint8(0, KIND.PCM16);
  message.setUint32(1, sequence, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    message.setInt16(5 + 2 * i, Math.round(s * 32767), true);
  }
  return message.buffer;
}

async function start() {
  const stats = window.codecstream;
  $("error").textContent = "";
  const model = $("model").value.trim() || undefined;
  // The token comes in the page's fragment (#token=...), which the browser never sends to a
  // server or logs; ?token= works too.
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || new URLSearchParams(location.search).get("token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const models = await (await fetch("models" + (model ? "?model=" + encodeURIComponent(model) : ""), { headers })).json();
  if (models.error) throw new Error(models.error);
  const rate = models.sample_rate;
  const context = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  await context.audioWorklet.addModule("capture-worklet.js");
  await context.audioWorklet.addModule("playback-worklet.js");
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const microphone = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "capture");
  const playback = new AudioWorkletNode(context, "playback", {
    outputChannelCount: [1],
    processorOptions: { capacity: rate * 4, prefill: Math.round(rate * 0.1) },
  });
  microphone.connect(capture);
  playback.connect(context.destination);

  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const pending = [];
  let pendingLength = 0, sequence = 0, ready = false;
  const chunk = Math.round(rate * CHUNK_MS / 1000);
  const sentAt = new Map();

  socket.onopen = () => socket.send(control({ type: "hello", version: 1, model, direction: "audio->audio", sample_rate: rate, channels: 1, format: "pcm16" }));
  socket.onmessage = (event) => {
    const data = new Uint8Array(event.data);
    const kind = data[0];
    if (kind === KIND.CONTROL) {
      const message = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      if (message.type === "ready") {
        ready = true; stats.ready = message;
        $("state").textContent = "streaming (" + message.model + ")";
        $("model-latency").textContent = message.latency_ms.toFixed(1) + " ms";
      } else if (message.type === "end") { stats.ended = true; }
    } else if (kind === KIND.PCM16) {
      const view = new DataView(event.data);
      const samples = new Float32Array((data.length - 5) / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(5 + 2 * i, true) / 32768;
      stats.received++; stats.receivedSamples += samples.length;
      playback.port.postMessage(samples, [samples.buffer]);
      // Round trip: the input chunk that carried the audio now returning (model latency included).
      const heard = Math.floor((stats.receivedSamples - 1) / chunk) - Math.ceil(stats.ready.latency_ms * rate / 1000 / chunk);
      if (sentAt.has(heard)) $("rtt").textContent = (performance.now() - sentAt.get(heard)).toFixed(0) + " ms";
      $("counts").textContent = stats.sent + " / " + stats.received;
    } else if (kind === KIND.ERROR) {
      const error = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      stats.errors.push(error);
      $("error").textContent = error.code + ": " + error.message;
    }
  };
  socket.onclose = () => { $("state").textContent = "closed"; };
  capture.port.onmessage = (event) => {
    const samples = event.data;
    let energy = 0;
    for (let i = 0; i < samples.length; i++) energy += samples[i] * samples[i];
    $("level").firstElementChild.style.width = Math.min(100, 400 * Math.sqrt(energy / samples.length)) + "%";
    if (!ready || socket.readyState !== WebSocket.OPEN) return;
    pending.push(samples); pendingLength += samples.length;
    while (pendingLength >= chunk) {
      const block = new Float32Array(chunk);
      let filled = 0;
      while (filled < chunk) {
        const head = pending[0], take = Math.min(head.length, chunk - filled);
        block.set(head.subarray(0, take), filled); filled += take;
        if (take === head.length) pending.shift(); else pending[0] = head.subarray(take);
      }
      pendingLength -= chunk;
      sentAt.set(sequence, performance.now());
      if (sentAt.size > 500) sentAt.delete(sequence - 500);
      socket.send(pcm16(block, sequence++));
      stats.sent++;
    }
  };
  playback.port.onmessage = (event) => {
    stats.underruns = event.data.underruns;
    $("buffer").textContent = (1000 * event.data.buffered / rate).toFixed(0) + " ms";
    $("underruns").textContent = event.data.underruns;
  };
  session = { context, stream, socket };
  $("start").disabled = true; $("stop").disabled = false;
}

function stop() {
  if (!session) return;
  const { context, stream, socket } = session;
  if (socket.readyState === WebSocket.OPEN) socket.send(control({ type: "end" }));
  stream.getTracks().forEach((track) => track.stop());
  setTimeout(() => context.close(), 1500);
  session = null;
  $("start").disabled = false; $("stop").disabled = true;
}

$("start").onclick = () => start().catch((error) => { $("error").textContent = String(error); window.codecstream.errors.push(String(error)); });
$("stop").onclick = stop;
if (new URLSearchParams(location.search).has("autostart")) $("start").click();

// codecstream browser client: microphone → WebSocket → server model → WebSocket → speakers.
// The AudioContext runs at the model's sample rate, so the browser resamples the microphone.
"use strict";
const $ = (id) => document.getElementById(id);
const KIND = { CONTROL: 1, PCM16: 2, F32: 3, CODES: 4, ERROR: 5 };
const CHUNK_MS = 20;
const WINDOWED = ["lookahead_frames", "context_frames", "block_frames", "crossfade_frames"];
const stats = window.codecstream = {
  sent: 0, received: 0, receivedSamples: 0, underruns: 0, ready: null, errors: [], ended: false,
  ab: "B", played: { A: 0, B: 0 }, models: null, rtt: [], loaded: false,
};
// The page's spectrogram frames (what it drew), for tests and the curious.
window.codecstreamSpectrogram = (which, count) => (views[which] ? views[which].frames.slice(0, count).map((f) => Array.from(f)) : []);
const views = {};
let session = null, recordings = null;

// The token comes in the page's fragment (#token=...), which the browser never sends to a
// server or logs; ?token= works too.
const token = new URLSearchParams(location.hash.slice(1)).get("token") || new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};

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

// -- choose --------------------------------------------------------------------------------
async function loadModels() {
  const answer = await (await fetch("models", { headers })).json();
  if (answer.error) throw new Error(answer.error);
  stats.models = answer.models;
  const select = $("model");
  select.replaceChildren(...answer.models.filter((m) => m.directions.includes("audio->audio")).map((m) => new Option(m.model, m.model)));
  select.value = answer.default || select.dataset.default;
  showModel();
}

function currentModel() { return (stats.models || []).find((m) => m.model === $("model").value); }

function showModel() {
  const info = currentModel(), box = $("options");
  box.replaceChildren();
  if (!info) return;
  $("model-info").textContent = `${info.model}: ${info.sample_rate} Hz, ${info.channels} channel(s), ${info.frame_rate.toFixed(2)} frames/s (hop ${info.hop_length})`;
  for (const option of info.options) {
    const label = document.createElement("label");
    label.title = option.doc || "";
    label.append(option.name.replaceAll("_", " ") + (option.unit ? ` (${option.unit})` : ""));
    let input;
    if (option.choices) {
      input = document.createElement("select");
      input.append(new Option("default", ""), ...option.choices.map((c) => new Option(String(c), String(c))));
    } else if (option.type === "bool") {
      input = document.createElement("select");
      input.append(new Option("default", ""), new Option("on", "true"), new Option("off", "false"));
    } else {
      input = document.createElement("input");
      input.type = "number"; input.placeholder = "default"; input.size = 6;
      if (option.minimum !== undefined) input.min = option.minimum;
      if (option.maximum !== undefined) input.max = option.maximum;
      if (option.type === "float") input.step = "any";
    }
    input.id = "option-" + option.name; input.dataset.type = option.type;
    label.append(input); box.append(label);
  }
  const mode = $("option-mode");
  const windowed = () => WINDOWED.forEach((name) => { const input = $("option-" + name); if (input) input.disabled = mode.value !== "windowed"; });
  if (mode) { mode.onchange = windowed; windowed(); }
}

function chosenOptions() {
  const options = {};
  for (const input of $("options").querySelectorAll("select, input")) {
    if (input.disabled || input.value === "") continue;
    const name = input.id.slice("option-".length), type = input.dataset.type;
    options[name] = type === "bool" ? input.value === "true" : type === "int" ? parseInt(input.value, 10) : type === "float" ? parseFloat(input.value) : input.value;
  }
  return options;
}

async function loadDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [id, kind] of [["input-device", "audioinput"], ["output-device", "audiooutput"]]) {
    const select = $(id), chosen = select.value;
    select.replaceChildren(new Option("default", ""), ...devices.filter((d) => d.kind === kind && d.deviceId !== "default")
      .map((d, i) => new Option(d.label || `${kind === "audioinput" ? "microphone" : "speakers"} ${i + 1}`, d.deviceId)));
    select.value = chosen;
  }
  // Choosing the speakers needs AudioContext.setSinkId (Chromium); elsewhere the default plays.
  $("output-device").disabled = !("setSinkId" in AudioContext.prototype);
}

function bitrate(info, options, ready) {
  if (options.bandwidth) return options.bandwidth.toFixed(1) + " kbps";
  const levels = ready.code_levels || [];
  if (!levels.length) return "continuous features (no bit-rate)";
  const bps = levels.reduce((sum, l) => sum + l.codebooks * Math.log2(l.codebook_size) * l.frame_rate, 0);
  return (bps / 1000).toFixed(2) + " kbps (every code-book)";
}

// -- listen ----------------------------------------------------------------------------------
async function start() {
  $("error").textContent = "";
  const info = currentModel();
  if (!info) throw new Error("the server serves no model for audio->audio");
  const options = chosenOptions(), rate = info.sample_rate;
  const context = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  if ($("output-device").value && context.setSinkId) await context.setSinkId($("output-device").value);
  await context.audioWorklet.addModule("capture-worklet.js");
  await context.audioWorklet.addModule("playback-worklet.js");
  const device = $("input-device").value;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: {
    channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false, ...(device ? { deviceId: { exact: device } } : {}),
  } });
  loadDevices().catch(() => {});  // labels are readable once the microphone is granted
  const microphone = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "capture");
  const playback = new AudioWorkletNode(context, "playback", {
    outputChannelCount: [1],
    processorOptions: { capacity: rate * 4, prefill: Math.round(rate * 0.1) },
  });
  microphone.connect(capture);
  playback.connect(context.destination);
  views.input = new Spectrogram($("input-spectrogram"), 4000);
  views.output = new Spectrogram($("output-spectrogram"), 4000);
  const graph = new LatencyGraph($("graph"), 300);
  recordings = { rate, input: new Recording(rate * 600), output: new Recording(rate * 600) };
  $("download-input").disabled = $("download-output").disabled = true;

  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const pending = [];
  let pendingLength = 0, sequence = 0, ready = false, buffered = null, underruns = 0;
  const chunk = Math.round(rate * CHUNK_MS / 1000);
  const sentAt = new Map();

  socket.onopen = () => socket.send(control({ type: "hello", version: 1, model: info.model, direction: "audio->audio", sample_rate: rate, channels: 1, format: "pcm16", options }));
  socket.onmessage = (event) => {
    const data = new Uint8Array(event.data);
    const kind = data[0];
    if (kind === KIND.CONTROL) {
      const message = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      if (message.type === "ready") {
        ready = true; stats.ready = message;
        $("state").textContent = "streaming (" + message.model + (message.replica ? ", replica " + message.replica : "") + ")";
        $("model-latency").textContent = message.latency_ms.toFixed(1) + " ms";
        $("bitrate").textContent = bitrate(info, options, message);
        graph.latency = message.latency_ms;
      } else if (message.type === "end") { stats.ended = true; finish(); }
    } else if (kind === KIND.PCM16) {
      const view = new DataView(event.data);
      const samples = new Float32Array((data.length - 5) / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(5 + 2 * i, true) / 32768;
      // Output sample k is the model's rendering of input sample k: A plays the input's samples
      // at the same positions, so both arrive after the same latency.
      const position = stats.receivedSamples;
      stats.received++; stats.receivedSamples += samples.length;
      recordings.output.push(samples); views.output.push(samples);
      const heard = stats.ab === "A" ? recordings.input.range(position, position + samples.length) : samples;
      stats.played[stats.ab] += samples.length;
      playback.port.postMessage(heard, [heard.buffer]);
      // Round trip: the input chunk that carried the audio now returning (model latency included).
      const carried = Math.floor((stats.receivedSamples - 1) / chunk) - Math.ceil(stats.ready.latency_ms * rate / 1000 / chunk);
      let rtt = null;
      if (sentAt.has(carried)) { rtt = performance.now() - sentAt.get(carried); $("rtt").textContent = rtt.toFixed(0) + " ms"; stats.rtt.push(rtt); }
      graph.add({ rtt, buffer: buffered, underrun: stats.underruns > underruns });
      underruns = stats.underruns;
      $("counts").textContent = stats.sent + " / " + stats.received;
    } else if (kind === KIND.ERROR) {
      const error = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      stats.errors.push(error);
      $("error").textContent = error.code + ": " + error.message;
    }
  };
  socket.onclose = () => { $("state").textContent = "closed"; finish(); };
  capture.port.onmessage = (event) => {
    const samples = event.data;
    let energy = 0;
    for (let i = 0; i < samples.length; i++) energy += samples[i] * samples[i];
    $("level").firstElementChild.style.width = Math.min(100, 400 * Math.sqrt(energy / samples.length)) + "%";
    if (!ready || session === null || socket.readyState !== WebSocket.OPEN) return;  // nothing after Stop
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
      // What the server receives, PCM16 as sent: the A side and the input WAV hold the same.
      const sent = block.map((s) => Math.round(Math.max(-1, Math.min(1, s)) * 32767) / 32768);
      recordings.input.push(sent); views.input.push(sent);
      socket.send(pcm16(block, sequence++));
      stats.sent++;
    }
  };
  playback.port.onmessage = (event) => {
    stats.underruns = event.data.underruns;
    buffered = 1000 * event.data.buffered / rate;
    $("buffer").textContent = buffered.toFixed(0) + " ms";
    $("underruns").textContent = event.data.underruns;
  };
  session = { context, stream, socket };
  $("start").disabled = true; $("stop").disabled = false; $("model").disabled = true;
}

function finish() {
  $("download-input").disabled = $("download-output").disabled = !recordings || !recordings.output.length;
  $("start").disabled = false; $("stop").disabled = true; $("model").disabled = false;
}

function stop() {
  if (!session) return;
  const { context, stream, socket } = session;
  if (socket.readyState === WebSocket.OPEN) socket.send(control({ type: "end" }));
  stream.getTracks().forEach((track) => track.stop());
  setTimeout(() => context.close(), 1500);
  session = null;
  $("stop").disabled = true;
}

function toggleAB() {
  stats.ab = stats.ab === "B" ? "A" : "B";
  $("ab").setAttribute("aria-pressed", String(stats.ab === "A"));
  $("ab").textContent = stats.ab === "A" ? "Hearing: A (original, delayed)" : "Hearing: B (codec)";
}

function download(which) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(recordings[which].wav(recordings.rate));
  link.download = `codecstream-${which}.wav`;
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// -- TTS playback -------------------------------------------------------------------------------
function codesMessage(levels, sequence) {  // kind, u32 sequence, int32, levels, [u16 rows, u32 frames]..., values
  let count = 0;
  for (const level of levels) count += level.length * level[0].length;
  const view = new DataView(new ArrayBuffer(7 + 6 * levels.length + 4 * count));
  view.setUint8(0, KIND.CODES); view.setUint32(1, sequence, true); view.setUint8(5, 0); view.setUint8(6, levels.length);
  let offset = 7;
  for (const level of levels) { view.setUint16(offset, level.length, true); view.setUint32(offset + 2, level[0].length, true); offset += 6; }
  for (const level of levels) for (const row of level) for (const value of row) { view.setInt32(offset, value, true); offset += 4; }
  return view.buffer;
}

function showLayouts() {
  const served = new Set((stats.models || []).map((m) => m.model));
  for (const option of $("tts-layout").options) option.disabled = !served.has(option.value === "orpheus" ? "snac-24khz" : "encodec-24khz");
  const usable = [...$("tts-layout").options].find((o) => !o.disabled);
  if ($("tts-layout").selectedOptions[0].disabled && usable) $("tts-layout").value = usable.value;
  $("tts-play").disabled = !usable;
}

async function playTokens() {
  const speed = parseFloat($("tts-speed").value) || 1.2;
  $("tts-state").textContent = "making tokens…"; $("tts-play").disabled = true;
  const query = `replay?layout=${$("tts-layout").value}&text=${encodeURIComponent($("tts-text").value)}`;
  const replay = await (await fetch(query, { headers })).json();
  if (replay.error) { $("tts-play").disabled = false; throw new Error(replay.error); }
  const rate = replay.sample_rate, n = replay.messages.length;
  const context = new AudioContext({ sampleRate: rate });
  if ($("output-device").value && context.setSinkId) await context.setSinkId($("output-device").value);
  await context.audioWorklet.addModule("playback-worklet.js");
  const playback = new AudioWorkletNode(context, "playback", { outputChannelCount: [1], processorOptions: { capacity: rate * 60, prefill: Math.round(rate * 0.2) } });
  playback.connect(context.destination);
  const tts = stats.tts = { messages: n, sent: 0, receivedSamples: 0, firstAudioMs: null, lags: [], steadyLagMs: null, ended: false, ready: null };
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const sentAt = [], period = 1000 * replay.tokens_per_message / (replay.token_rate * speed);
  const show = () => { $("tts-counts").textContent = `${tts.sent} / ${n} frames, ${(tts.receivedSamples / rate).toFixed(2)} s of audio`; };
  socket.onopen = () => socket.send(control({ type: "hello", version: 1, model: replay.model, direction: "codes->audio", sample_rate: rate, channels: 1, format: "pcm16" }));
  const sendDue = (start) => {  // at token pace: message i leaves at start + i·period
    while (tts.sent < n && performance.now() >= start + tts.sent * period) {
      sentAt.push(performance.now());
      socket.send(codesMessage(replay.messages[tts.sent], tts.sent)); tts.sent++;
    }
    if (tts.sent < n) setTimeout(() => sendDue(start), Math.max(1, start + tts.sent * period - performance.now()));
    else socket.send(control({ type: "end" }));
    show();
  };
  socket.onmessage = (event) => {
    const data = new Uint8Array(event.data);
    if (data[0] === KIND.CONTROL) {
      const message = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      if (message.type === "ready") { tts.ready = message; $("tts-state").textContent = `playing ${n} ${replay.layout} frames (${replay.model}, ${replay.token_rate.toFixed(0)} tokens/s is real time)`; sendDue(performance.now()); }
      if (message.type === "end") {
        tts.ended = true; $("tts-state").textContent = "done"; $("tts-play").disabled = false;
        const steady = tts.lags.slice(Math.floor(tts.lags.length / 2)).sort((a, b) => a - b);
        tts.steadyLagMs = steady.length ? steady[Math.floor(steady.length / 2)] : null;
        $("tts-lag").textContent = tts.steadyLagMs === null ? "–" : tts.steadyLagMs.toFixed(0) + " ms (median, second half)";
        setTimeout(() => context.close(), 1000 * (tts.receivedSamples / rate) + 1500);
      }
    } else if (data[0] === KIND.PCM16) {
      const view = new DataView(event.data), samples = new Float32Array((data.length - 5) / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(5 + 2 * i, true) / 32768;
      tts.receivedSamples += samples.length;
      playback.port.postMessage(samples, [samples.buffer]);
      // Lag: from sending the frame that completes this audio to hearing it (the decoder's latency included).
      const frame = Math.min(sentAt.length - 1, Math.ceil(tts.receivedSamples / replay.samples_per_message) - 1);
      const lag = performance.now() - sentAt[Math.max(0, frame)];
      tts.lags.push(lag);
      if (tts.firstAudioMs === null) { tts.firstAudioMs = performance.now() - sentAt[0]; $("tts-first-audio").textContent = tts.firstAudioMs.toFixed(0) + " ms"; }
      show();
    } else if (data[0] === KIND.ERROR) {
      const error = JSON.parse(new TextDecoder().decode(data.subarray(1)));
      stats.errors.push(error); $("error").textContent = error.code + ": " + error.message; $("tts-play").disabled = false;
    }
  };
}

const report = (error) => { $("error").textContent = String(error); stats.errors.push(String(error)); };
$("model").onchange = showModel;
$("start").onclick = () => start().catch(report);
$("stop").onclick = stop;
$("ab").onclick = toggleAB;
$("download-input").onclick = () => download("input");
$("download-output").onclick = () => download("output");
$("tts-play").onclick = () => playTokens().catch(report);
Promise.all([loadModels(), loadDevices()]).catch(report).then(() => {
  showLayouts();
  stats.loaded = true;
  if (new URLSearchParams(location.search).has("autostart")) $("start").click();
});

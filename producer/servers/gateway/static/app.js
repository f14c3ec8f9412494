// The try-it page: pick or record a clip, pick an algorithm, POST it to the gateway.
"use strict";

const $ = (id) => document.getElementById(id);
// clip: the first clip; more: the others by position (2, 3...) for operations taking several;
// operations: "vad", "speaker.verify"... -> {algorithm, help, clips, options} from the catalog.
const state = { clip: null, more: {}, operations: {}, changedOptions: () => [] };

function headers() {
  const key = $("apikey").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function getJSON(path) {
  const res = await fetch(path, { headers: headers() });
  return { status: res.status, body: await res.json() };
}

async function loadAlgorithms() {
  const { status, body } = await getJSON("/v1/algorithms");
  if (status !== 200) { $("health").textContent = body.error ? body.error.message : `HTTP ${status}`; return; }
  const names = [...(body.operations || body.algorithms)];  // "speaker.verify" once operations exist
  state.operations = {};
  Object.values(body.declarations || {}).forEach((algorithm) => {
    Object.entries(algorithm.operations).forEach(([key, op]) => { state.operations[key] = { ...op, algorithm }; });
  });
  // transcribe (long recordings, as a job) is no operation of the catalog: the page adds it.
  if (!names.includes(SpeechTranscribe.NAME)) names.push(SpeechTranscribe.NAME);
  state.operations[SpeechTranscribe.NAME] ||= SpeechTranscribe.operation;
  const chosen = $("algorithm").value;
  $("algorithm").replaceChildren(...names.map((a) => new Option(a, a)));
  if (names.includes(chosen)) $("algorithm").value = chosen;
  showOperation();
  refreshHealth();
}

// The chosen operation's help, its options form and one file input per extra clip.
function showOperation() {
  const op = state.operations[$("algorithm").value] || { help: "", clips: 1, options: {} };
  $("help").textContent = op.algorithm ? `${op.help} — ${op.algorithm.summary} (${op.algorithm.source})` : op.help;
  state.changedOptions = SpeechOptions.render($("option-fields"), op);
  const inputs = [];
  for (let n = 2; n <= op.clips; n++) {
    const input = Object.assign(document.createElement("input"), { type: "file", id: `file${n}`, accept: "audio/*,.wav,.flac,.ogg" });
    input.addEventListener("change", (e) => {
      const f = e.target.files[0];
      state.more[n] = f ? { blob: f, name: f.name } : undefined;
    });
    const label = document.createElement("label");
    label.className = "file second";
    label.append(`Clip ${n} of ${op.clips} `, input);
    if (state.more[n]) label.append(` (${state.more[n].name})`);
    inputs.push(label);
  }
  $("more-clips").replaceChildren(...inputs);
}

async function refreshHealth() {
  const { body } = await getJSON("/v1/health");
  if (!body.queues) return;
  $("health").replaceChildren(...Object.entries(body.queues).map(([name, q]) => {
    const badge = document.createElement("span");
    badge.className = q.alive ? "q alive" : "q";
    badge.dataset.queue = name;
    badge.title = q.alive ? `${q.worker}, ${q.rtt_ms} ms` : q.error.message;
    badge.textContent = `${name} ${q.alive ? "✓" : "✗"}`;
    return badge;
  }));
}

// Decode the clip in the browser only to draw it; the gateway receives the original bytes.
// At 8 kHz, plenty for a waveform: an hour-long recording stays ~115 MB in the tab.
async function useClip(blob, name) {
  state.clip = { blob, name };
  $("clip-name").textContent = `${name} (${(blob.size / 1024).toFixed(1)} KiB)`;
  $("player").src = URL.createObjectURL(blob);
  $("player").hidden = false;
  $("run").disabled = false;
  try {
    const ctx = new AudioContext({ sampleRate: 8000 });
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    Object.assign(state.clip, { samples: audio.getChannelData(0), sampleRate: audio.sampleRate, duration: audio.duration });
    ctx.close();
  } catch (err) {
    $("clip-name").textContent += " — the browser cannot draw this format, the server may still decode it";
  }
  SpeechRender.drawWaveform($("waveform"), state.clip);
}

async function run() {
  if (!state.clip) return;
  const algorithm = $("algorithm").value;
  $("run").disabled = true;
  $("status").textContent = `running ${algorithm}…`;
  try {
    if (algorithm === SpeechTranscribe.NAME) await SpeechTranscribe.run(state.clip, state.changedOptions(), ui);
    else await call(algorithm);
  } catch (err) {
    showError({ type: "NetworkError", message: String(err) });
  } finally {
    $("run").disabled = false;
  }
}

// One call of an operation, answered while the page waits.
async function call(algorithm) {
  const clips = (state.operations[algorithm] || { clips: 1 }).clips;
  const form = new FormData();
  form.append("audio", state.clip.blob, state.clip.name);
  // The other clips of the operations that take several (speaker.verify): the gateway
  // says which are missing.
  for (let n = 2; n <= clips; n++) if (state.more[n]) form.append("audio", state.more[n].blob, state.more[n].name);
  // Only the options changed from their defaults, as JSON literals.
  state.changedOptions().forEach(([name, text]) => form.append(name, text));
  const started = performance.now();
  const res = await fetch(`/v1/${encodeURIComponent(algorithm)}`, { method: "POST", body: form, headers: headers() });
  const body = await res.json();
  showJSON(body);
  if (!res.ok) return showError(body.error || { type: `HTTP ${res.status}`, message: "" });
  const overlay = SpeechRender.render(body.result, $("result"));
  SpeechRender.drawWaveform($("waveform"), state.clip, overlay);
  $("status").textContent = `${algorithm} answered in ${((performance.now() - started) / 1000).toFixed(2)} s`;
}

const showJSON = (body) => { $("json").textContent = JSON.stringify(body, null, 2); };
// What transcribe.js uses of the page.
const ui = {
  box: $("result"), headers, showError, json: showJSON,
  status: (text) => { $("status").textContent = text; },
};

function showError(error) {
  const p = document.createElement("p");
  p.className = "error";
  p.id = "error";
  p.textContent = `${error.type}: ${error.message}`;
  $("result").replaceChildren(p);
  $("status").textContent = "failed";
}

// Recording: raw PCM through Web Audio, packed as 16-bit WAV, which every worker decodes
// (MediaRecorder's webm/opus is not a format libsndfile reads).
let recorder = null;
async function toggleRecording() {
  if (recorder) return recorder.stop();
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const tap = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  tap.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  source.connect(tap); tap.connect(ctx.destination);
  $("record").classList.add("on"); $("record").textContent = "■ Stop";
  recorder = {
    stop() {
      tap.disconnect(); source.disconnect(); stream.getTracks().forEach((t) => t.stop());
      const rate = ctx.sampleRate;
      ctx.close();
      recorder = null;
      $("record").classList.remove("on"); $("record").textContent = "● Record";
      useClip(wav(chunks, rate), "recording.wav");
    },
  };
}

function wav(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + n * 2));
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + n * 2, true); text(8, "WAVEfmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, n * 2, true);
  let at = 44;
  chunks.forEach((c) => c.forEach((v) => { view.setInt16(at, Math.max(-1, Math.min(1, v)) * 32767, true); at += 2; }));
  return new Blob([view], { type: "audio/wav" });
}

$("file").addEventListener("change", (e) => e.target.files[0] && useClip(e.target.files[0], e.target.files[0].name));
$("algorithm").addEventListener("change", showOperation);
$("record").addEventListener("click", () => toggleRecording().catch((err) => showError({ type: "Microphone", message: String(err) })));
$("run").addEventListener("click", run);
$("apikey").value = localStorage.getItem("speech-api-key") || "";
$("apikey").addEventListener("change", () => { localStorage.setItem("speech-api-key", $("apikey").value); loadAlgorithms(); });
loadAlgorithms();

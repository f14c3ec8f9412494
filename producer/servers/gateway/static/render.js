// Renderers for algorithm results. They pick a view from the result's shape, not from
// the algorithm's name, so a new algorithm with a familiar shape renders without changes:
//   words[]            -> transcript with word timings (asr, transcribe)
//   segments[]         -> speech segments over the waveform (vad)
//   score / same       -> speaker verification score
//   embedding          -> speaker embedding as a strip
//   {dtype,shape,data} -> arrays (features) as heatmaps (2-D) or curves (1-D)
//   audio bytes        -> a player (denoise)
// Anything else still shows as JSON below the view.
"use strict";

const SpeechRender = (() => {
  const el = (tag, attrs = {}, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const isArray = (v) => v && typeof v === "object" && "dtype" in v && "shape" in v && "data" in v;
  const TYPED = { float32: Float32Array, float64: Float64Array, int16: Int16Array, int32: Int32Array,
    uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, uint32: Uint32Array };
  const DTYPE_ALIASES = { f4: "float32", f8: "float64", i2: "int16", i4: "int32", u1: "uint8",
    i1: "int8", u2: "uint16", u4: "uint32" };

  // {"dtype", "shape", "data": base64} -> {shape, values: typed array}
  function decodeArray(a) {
    const name = DTYPE_ALIASES[String(a.dtype).replace(/^[<>=|]/, "")] || String(a.dtype);
    const Typed = TYPED[name];
    if (!Typed) throw new Error(`cannot draw dtype ${a.dtype}`);
    const raw = Uint8Array.from(atob(a.data), (c) => c.charCodeAt(0));
    return { shape: a.shape, values: new Typed(raw.buffer) };
  }

  function bytesOf(v) {
    return typeof v === "string" && v.length > 64 && /^[A-Za-z0-9+/]+=*$/.test(v.slice(0, 4096));
  }

  // --- the waveform, with overlays drawn on the clip's clock --------------------------------
  function drawWaveform(canvas, clip, overlay = {}) {
    const ctx = canvas.getContext("2d");
    const { width: w, height: h } = canvas;
    ctx.clearRect(0, 0, w, h);
    if (!clip || !clip.samples) return;
    const duration = clip.duration || clip.samples.length / clip.sampleRate;
    const x = (t) => (t / duration) * w;
    ctx.fillStyle = "rgba(34,197,94,0.22)";
    (overlay.segments || []).forEach((s) => ctx.fillRect(x(s.start), 0, x(s.end) - x(s.start), h));
    const step = Math.max(1, Math.floor(clip.samples.length / w));
    ctx.strokeStyle = "#334155";
    ctx.beginPath();
    for (let px = 0; px < w; px++) {
      let lo = 1, hi = -1;
      const from = px * step;
      for (let i = from; i < Math.min(from + step, clip.samples.length); i++) {
        lo = Math.min(lo, clip.samples[i]); hi = Math.max(hi, clip.samples[i]);
      }
      if (hi < lo) continue;
      ctx.moveTo(px + 0.5, h / 2 - hi * h * 0.45);
      ctx.lineTo(px + 0.5, h / 2 - lo * h * 0.45);
    }
    ctx.stroke();
    ctx.font = "12px system-ui"; ctx.textBaseline = "top";
    (overlay.words || []).forEach((wd, i) => {
      // Alternate shades and a start line keep back-to-back words apart.
      ctx.fillStyle = i % 2 ? "rgba(37,99,235,0.07)" : "rgba(37,99,235,0.17)";
      ctx.fillRect(x(wd.start), 0, x(wd.end) - x(wd.start), h);
      ctx.fillStyle = "rgba(29,78,216,0.5)";
      ctx.fillRect(x(wd.start), 0, 1, h);
      ctx.fillStyle = "#1d4ed8";
      ctx.fillText(wd.word, x(wd.start) + 2, 4 + (i % 2) * 14);
    });
  }

  // --- views --------------------------------------------------------------------------------
  function transcript(result, box) {
    box.append(el("p", { id: "transcript" }, result.text || "(no speech recognised)"));
    const table = el("table", { id: "words" });
    table.append(row("th", ["word", "start (s)", "end (s)", "confidence"]));
    result.words.forEach((w) => table.append(
      row("td", [w.word, fmt(w.start), fmt(w.end), w.confidence === undefined ? "" : fmt(w.confidence)])));
    box.append(table);
    return { words: result.words };
  }

  function segments(result, box) {
    const total = result.segments.reduce((s, g) => s + (g.end - g.start), 0);
    box.append(el("p", { id: "segments-summary" },
      `${result.segments.length} speech segment(s), ${fmt(total)} s of speech` +
      (result.duration ? ` in ${fmt(result.duration)} s` : "")));
    const table = el("table", { id: "segments" });
    table.append(row("th", ["#", "start (s)", "end (s)"]));
    result.segments.forEach((g, i) => table.append(row("td", [i + 1, fmt(g.start), fmt(g.end)])));
    box.append(table);
    return { segments: result.segments };
  }

  function speakerScore(result, box) {
    const same = result.same;
    const view = el("div", { id: "speaker" });
    view.append(el("span", { class: "score" }, fmt(result.score)));
    if (same !== undefined) {
      view.append(el("span", { class: same ? "same" : "different" }, same ? "  same speaker" : "  different speakers"));
    }
    const meter = el("div", { class: "meter" });
    const fill = el("div", { style: `width:${Math.max(0, Math.min(1, result.score)) * 100}%` });
    meter.append(fill);
    view.append(meter);
    if (result.threshold !== undefined) view.append(el("p", { class: "muted" }, `threshold ${result.threshold}`));
    box.append(view);
  }

  function arrays(result, box) {
    // `times` is the frame clock of the other arrays: the x axis, not a view of its own.
    Object.entries(result).filter(([name, v]) => isArray(v) && name !== "times").forEach(([name, a]) => {
      const fig = el("div", { class: "feature", "data-name": name });
      fig.append(el("h3", {}, `${name} ${a.dtype} [${a.shape.join(" × ")}]`));
      const { shape, values } = decodeArray(a);
      const canvas = shape.length === 2 ? heatmap(shape, values) : curve(values);
      canvas.setAttribute("data-feature", name);
      fig.append(canvas);
      box.append(fig);
    });
  }

  function finiteRange(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return hi > lo ? [lo, hi] : [lo - 1, lo + 1];
  }

  // rows x frames, first row at the bottom (low MFCC / low mel bands low, as in a spectrogram)
  function heatmap([rows, cols], values) {
    const canvas = el("canvas", { width: cols, height: rows, class: "heatmap" });
    canvas.style.height = `${Math.max(60, Math.min(200, rows * 3))}px`;
    canvas.style.imageRendering = "pixelated";
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(cols, rows);
    const [lo, hi] = finiteRange(values);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c];
      const t = Number.isFinite(v) ? (v - lo) / (hi - lo) : 0;
      const p = ((rows - 1 - r) * cols + c) * 4;
      img.data[p] = 255 * Math.min(1, 1.6 * t); img.data[p + 1] = 255 * t * t;
      img.data[p + 2] = 255 * (0.35 + 0.65 * (1 - t)) * (1 - t * 0.7); img.data[p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function curve(values) {
    const canvas = el("canvas", { width: 960, height: 90, class: "curve" });
    const ctx = canvas.getContext("2d");
    const [lo, hi] = finiteRange(values);
    ctx.strokeStyle = "#2563eb"; ctx.beginPath();
    let pen = false;
    values.forEach((v, i) => {
      if (!Number.isFinite(v)) { pen = false; return; }  // unvoiced f0 frames are NaN
      const px = (i / Math.max(1, values.length - 1)) * 960, py = 85 - ((v - lo) / (hi - lo)) * 80;
      pen ? ctx.lineTo(px, py) : ctx.moveTo(px, py); pen = true;
    });
    ctx.stroke();
    return canvas;
  }

  function audioPlayers(result, box) {
    Object.entries(result).filter(([, v]) => bytesOf(v)).forEach(([name, b64]) => {
      const kind = String(result.format || "wav").toLowerCase();
      const audio = el("audio", { controls: "", "data-name": name, src: `data:audio/${kind};base64,${b64}` });
      box.append(el("h3", {}, name), audio);
    });
  }

  const row = (cell, values) => {
    const tr = el("tr");
    values.forEach((v) => tr.append(el(cell, {}, String(v))));
    return tr;
  };
  const fmt = (v) => (typeof v === "number" ? (Math.round(v * 1000) / 1000).toString() : String(v));

  // Fill `box` with every view the result's shape calls for; returns the waveform overlay.
  function render(result, box) {
    box.replaceChildren();
    let overlay = {};
    if (!result || typeof result !== "object") {
      box.append(el("p", {}, JSON.stringify(result)));
      return overlay;
    }
    if (Array.isArray(result.words)) overlay = { ...overlay, ...transcript(result, box) };
    if (Array.isArray(result.segments)) overlay = { ...overlay, ...segments(result, box) };
    if (typeof result.score === "number") speakerScore(result, box);
    arrays(result, box);
    Object.entries(result).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v) && !isArray(v))
      .forEach(([, nested]) => arrays(nested, box));  // e.g. {"features": {"mfcc": {...}}}
    audioPlayers(result, box);
    if (!box.childElementCount) box.append(el("p", { class: "muted" }, "No view for this result: see the JSON below."));
    return overlay;
  }

  return { render, drawWaveform, decodeArray };
})();

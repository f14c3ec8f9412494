// transcribe on the try-it page: a recording of any length sent as a job (POST /v1/jobs),
// polled for its progress (GET /v1/jobs/{id}), cancellable (DELETE), and once done its
// transcript with each speech segment drawn as a band over the recording's waveform.
"use strict";

const SpeechTranscribe = (() => {
  const NAME = "transcribe";
  const POLL_MS = 500;
  const ENDED = ["done", "failed", "cancelled"];
  // Shown when the gateway's catalog does not declare transcribe itself (it sends none of
  // its options then: the gateway's defaults apply).
  const operation = {
    help: "a recording of any length, run as a job: vad, then asr on each speech segment",
    clips: 1,
    options: {},
  };
  const make = (tag, props = {}) => Object.assign(document.createElement(tag), props);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const fmt = (t) => (Math.round(t * 100) / 100).toString();

  // Run on `clip` ({blob, name, samples, duration}) with `options` ([name, JSON literal]);
  // `ui`: {box, headers(), status(text), showError(error), json(body)}.
  async function run(clip, options, ui) {
    const form = new FormData();
    form.append("algorithm", NAME);
    form.append("audio", clip.blob, clip.name);
    options.forEach(([name, text]) => form.append(name, text));
    const bar = make("progress", { id: "job-progress", max: 1, value: 0 });
    const label = make("span", { id: "job-state", textContent: "uploading…" });
    const cancel = make("button", { id: "cancel", type: "button", textContent: "Cancel", disabled: true });
    const view = make("div", { id: "job" });
    view.append(bar, label, cancel);
    ui.box.replaceChildren(view);

    const started = performance.now();
    const res = await fetch("/v1/jobs", { method: "POST", body: form, headers: ui.headers() });
    let job = await res.json();
    if (res.status !== 202) {
      ui.json(job);
      return ui.showError(job.error || { type: `HTTP ${res.status}`, message: "" });
    }
    cancel.disabled = false;
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      fetch(`/v1/jobs/${job.id}`, { method: "DELETE", headers: ui.headers() });
    });
    const show = () => {
      view.dataset.state = job.state;
      bar.value = job.progress || 0;
      label.textContent = `${job.state} ${Math.round(bar.value * 100)}%`;
    };
    show();
    while (!ENDED.includes(job.state)) {
      await sleep(POLL_MS);
      const answer = await fetch(`/v1/jobs/${job.id}`, { headers: ui.headers() });
      const body = await answer.json();
      if (!answer.ok) {
        ui.json(body);
        return ui.showError(body.error || { type: `HTTP ${answer.status}`, message: "" });
      }
      job = body;
      show();
    }
    cancel.remove();
    ui.json(job);
    if (job.state === "failed") return ui.showError(job.error);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (job.state === "cancelled") return ui.status(`transcribe cancelled after ${seconds} s`);
    const words = make("div");
    view.after(timeline(clip, job.result), words);
    SpeechRender.render(job.result, words);  // the transcript, its words and segments
    ui.status(`transcribe done in ${seconds} s`);
  }

  // The waveform (min/max per pixel column) with one band per segment over its time span,
  // its text as label and tooltip; the bands carry data-start, data-end and data-text.
  function timeline(clip, result) {
    const canvas = make("canvas", { id: "transcribe-waveform", width: 960, height: 120 });
    canvas.setAttribute("aria-label", "waveform with the speech segments");
    SpeechRender.drawWaveform(canvas, clip);
    const wrap = make("div", { id: "timeline" });
    wrap.append(canvas);
    // The waveform's clock when the browser decoded the clip, the gateway's otherwise.
    const duration = (clip.samples && clip.duration) || result.duration;
    result.segments.forEach((s) => {
      const band = make("div", { className: "band", title: `${fmt(s.start)}–${fmt(s.end)} s: ${s.text}` });
      Object.assign(band.dataset, { start: s.start, end: s.end, text: s.text });
      band.style.left = `${(s.start / duration) * 100}%`;
      band.style.width = `${((s.end - s.start) / duration) * 100}%`;
      band.append(make("span", { textContent: s.text }));
      wrap.append(band);
    });
    return wrap;
  }

  return { NAME, operation, run };
})();

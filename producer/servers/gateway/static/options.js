// The options form of the try-it page, made from an operation's declaration as
// GET /v1/algorithms answers it: {kind, default, help, low/high, choices, max_chars}.
// Only the options whose value differs from their default are sent, each as a JSON literal
// (the gateway decodes them and checks them against the same declaration).
"use strict";

const SpeechOptions = (() => {
  const make = (tag, props = {}) => Object.assign(document.createElement(tag), props);
  const literal = (value) => JSON.stringify(value);

  // One control per kind; each returns the element and a function reading its value
  // (undefined when the field is left empty, which sends nothing).
  const controls = {
    number: (name, o) => numberInput(name, o, "any"),
    integer: (name, o) => numberInput(name, o, "1"),
    flag(name, o) {
      const input = make("input", { type: "checkbox", name, checked: Boolean(o.default) });
      return [input, () => input.checked];
    },
    choice(name, o) {
      const select = make("select", { name });
      select.append(...o.choices.map((c) => new Option(c, c, c === o.default, c === o.default)));
      return [select, () => select.value];
    },
    choices(name, o) {
      const box = make("span", { className: "choices" });
      const boxes = o.choices.map((c) => {
        const input = make("input", { type: "checkbox", name, value: c, checked: o.default.includes(c) });
        const label = make("label", { className: "choice" });
        label.append(input, ` ${c}`);
        box.append(label);
        return input;
      });
      return [box, () => boxes.filter((b) => b.checked).map((b) => b.value)];
    },
    text(name, o) {
      const input = make("input", { type: "text", name, value: o.default ?? "", maxLength: o.max_chars });
      return [input, () => (input.value === "" ? undefined : input.value)];
    },
    texts(name, o) {
      const area = make("textarea", { name, rows: 3, value: (o.default || []).join("\n") });
      area.placeholder = "one per line";
      const read = () => area.value.split("\n").map((s) => s.trim()).filter(Boolean);
      return [area, () => (read().length ? read() : undefined)];
    },
  };

  function numberInput(name, o, step) {
    const input = make("input", { type: "number", name, step, value: o.default });
    input.min = o.low; input.max = o.high;
    input.placeholder = String(o.default);
    // A number input reads "" for text that is not a number: send that text as it is,
    // so the gateway names the option instead of the page silently dropping it.
    const read = () => {
      if (input.value !== "") return Number(input.value);
      return input.validity.badInput ? "not a number" : undefined;
    };
    return [input, read];
  }

  // Fill `container` with the form of `operation` ({help, clips, options}); return a
  // function answering the changed options as [name, JSON literal] pairs.
  function render(container, operation) {
    const readers = [];
    const rows = Object.entries(operation.options).map(([name, o]) => {
      const [control, read] = controls[o.kind](name, o);
      control.dataset.option = name;
      control.dataset.kind = o.kind;
      control.title = o.help;
      const row = make("div", { className: "option" });
      const label = make("label", { className: "name", textContent: name, title: o.help });
      const range = o.kind === "number" || o.kind === "integer" ? ` (${o.low} to ${o.high})` : "";
      const help = make("small", { className: "muted", textContent: `${o.help}${range}; default ${literal(o.default)}` });
      if (control.id === "") control.id = `option-${name}`;
      label.htmlFor = control.id;
      row.append(label, control, help);
      readers.push([name, o, read]);
      return row;
    });
    if (!rows.length) rows.push(make("p", { className: "muted", textContent: "no options" }));
    container.replaceChildren(...rows);
    return () => readers
      .map(([name, o, read]) => [name, o, read()])
      .filter(([, o, value]) => value !== undefined && literal(value) !== literal(o.default))
      .map(([name, , value]) => [name, literal(value)]);
  }

  return { render };
})();

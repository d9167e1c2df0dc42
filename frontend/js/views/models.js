// Models (#/models): upload (drop zone or file picker), follow the worker's validation,
// list the workspace's models with delete and "Analyse".
import { api } from "../api.js";
import { badge, clear, errorBox, formatBytes, h, toast } from "../dom.js";
import { deleteButton, dropZone, ensureStyles, fileList, formatShape, listedModel, newestFirst } from "./styles.js";

const POLL_MS = 500;
const SLOW_MS = 20000; // after this long in pending/validating, say why it may wait
const WAITING = new Set(["pending", "validating"]);
const STATUS_WORDS = {
  pending: "Waiting for a worker to pick the model up…",
  validating: "Checking the model in a worker…",
};

export async function mount(root) {
  ensureStyles();
  let alive = true;
  let file = null;
  let pollTimer = null;
  let listTimer = null;

  const input = h("input.cl-visually-hidden#model-file", { type: "file", name: "file", "aria-describedby": "model-file-hint" });
  const chosen = h("div#model-file-chosen", { "aria-live": "polite" });
  const fields = {
    name: field("model-name", "Name", { placeholder: "the file name" }),
    input_size: field("model-input-size", "Input size (H×W)", {
      placeholder: "e.g. 16x16",
      hint: "Only if the file does not record it.",
    }),
    channels: field("model-channels", "Channels", {
      type: "number",
      min: "1",
      max: "4",
      placeholder: "1 or 3",
      hint: "Only if the file does not record it.",
    }),
    mean: field("model-mean", "Normalisation mean", { placeholder: "e.g. 0.485, 0.456, 0.406", hint: "Optional; one value or one per channel." }),
    std: field("model-std", "Normalisation std", { placeholder: "e.g. 0.229, 0.224, 0.225", hint: "Optional; one value or one per channel." }),
    labels: field("model-labels", "Class labels", { placeholder: "e.g. cat, dog, bird", hint: "Optional; comma-separated, in class order." }),
    train_samples: field("model-train-samples", "Trained on the first … digits", {
      type: "number",
      min: "1",
      max: "1500",
      placeholder: "e.g. 200",
      hint: "Optional: if the model was trained on the first N images of the built-in digits' training split (at most 1500), the over-fitting metric uses those images.",
    }),
  };
  const submit = h("button.cl-btn.primary#model-upload", { type: "submit" }, "Upload model");
  const formError = h("div#model-error", { "aria-live": "assertive" });
  const status = h("div.cl-status-box#model-status", { "aria-live": "polite", hidden: true });
  const list = h("div#model-list", { "aria-busy": "true" }, h("p.muted", {}, "Loading models…"));

  const form = h(
    "form.cl-form#model-form",
    { novalidate: true, on: { submit: (event) => upload(event) } },
    dropZone({
      input,
      title: "Drop a model file here, or choose a file",
      hint: "ONNX, TorchScript, safetensors or a weights-only .pt. Pickles and torch.export archives are refused: loading them can run code.",
    }),
    h("p.cl-hint#model-file-hint", {}, "The file is checked by the server, then loaded only by a worker."),
    chosen,
    h("div.cl-fields", {}, fields.name.wrap, fields.labels.wrap),
    h("div.cl-fields.cl-fields-tight", {}, fields.input_size.wrap, fields.channels.wrap, fields.mean.wrap, fields.std.wrap),
    h("div.cl-fields", {}, fields.train_samples.wrap),
    h("div.cl-actions", {}, submit),
    formError,
  );
  input.addEventListener("files", (event) => {
    file = event.detail[0] || null;
    clear(formError);
    clear(chosen, file ? fileList([file]) : null);
  });

  const seriesFiles = h("input#series-files", { type: "file", multiple: true, "aria-describedby": "series-hint" });
  const seriesFields = {
    name: field("series-name", "Series name", { placeholder: "e.g. my CNN training" }),
    steps: field("series-steps", "Steps", { placeholder: "e.g. 0, 100, 1000", hint: "One per file, in the order of the files; not for a zip." }),
    input_size: field("series-input-size", "Input size (H×W)", { placeholder: "e.g. 16x16", hint: "Only if the files do not record it." }),
    channels: field("series-channels", "Channels", { type: "number", min: "1", max: "4", placeholder: "1 or 3" }),
    architecture: field("series-architecture", "Architecture", { placeholder: "e.g. digit_cnn", hint: "For safetensors weights." }),
  };
  const seriesSubmit = h("button.cl-btn#series-upload", { type: "submit" }, "Upload series");
  const seriesError = h("div#series-error", { "aria-live": "assertive" });
  const seriesForm = h(
    "form.cl-form#series-form",
    { novalidate: true, on: { submit: (event) => uploadSeries(event) } },
    h("div.cl-field", {}, h("label", { for: "series-files" }, "Checkpoint files"), seriesFiles,
      h("small.cl-hint#series-hint", {}, "Several files of one model at different training steps, or one .zip of them (each file's step is the last number in its name, e.g. step_100.onnx, or given by a steps.json inside); each is checked and validated like a model. A learning-dynamics analysis then compares them.")),
    h("div.cl-fields", {}, seriesFields.name.wrap, seriesFields.steps.wrap),
    h("div.cl-fields.cl-fields-tight", {}, seriesFields.input_size.wrap, seriesFields.channels.wrap, seriesFields.architecture.wrap),
    h("div.cl-actions", {}, seriesSubmit),
    seriesError,
  );

  async function uploadSeries(event) {
    event.preventDefault();
    clear(seriesError);
    const files = [...seriesFiles.files];
    const zipped = files.length === 1 && /\.zip$/i.test(files[0].name);
    if (files.length < 2 && !zipped) {
      clear(seriesError, errorBox("Choose two or more checkpoint files, or one .zip of them."));
      return;
    }
    const body = new FormData();
    if (zipped) body.append("archive", files[0], files[0].name);
    else for (const f of files) body.append("files", f, f.name);
    for (const [key, { input: el }] of Object.entries(seriesFields)) {
      const value = el.value.trim();
      if (value && !(zipped && key === "steps")) body.append(key, value);
    }
    seriesSubmit.disabled = true;
    try {
      const series = await api("/model-series", { method: "POST", form: body });
      if (!alive) return;
      toast(`Uploaded the series ${series.name} (${series.steps.length} checkpoints); they are being checked.`);
      seriesForm.reset();
      refreshList();
    } catch (error) {
      if (alive) clear(seriesError, errorBox(error.message));
    } finally {
      seriesSubmit.disabled = false;
    }
  }

  clear(
    root,
    h(
      "div.cl-page.cl-models",
      {},
      h("h1", {}, "Models"),
      h("section.cl-card", { "aria-labelledby": "upload-model-title" }, h("h2#upload-model-title", {}, "Upload a model"), form, status),
      h("section.cl-card", { "aria-labelledby": "upload-series-title" }, h("h2#upload-series-title", {}, "Upload a model series (checkpoints)"), seriesForm),
      h("section.cl-card", { "aria-labelledby": "model-list-title" }, h("h2#model-list-title", {}, "Models in this workspace"), list),
    ),
  );

  async function upload(event) {
    event.preventDefault();
    clear(formError);
    if (!file) {
      clear(formError, errorBox("Choose a model file first: drop it on the box above or use the file picker."));
      input.focus();
      return;
    }
    const body = new FormData();
    body.append("file", file, file.name);
    for (const [key, { input: el }] of Object.entries(fields)) {
      const value = el.value.trim();
      if (value) body.append(key, value);
    }
    submit.disabled = true;
    submit.textContent = "Uploading…";
    showStatus(h("p.cl-progress-line", {}, h("progress", { "aria-label": "Uploading" }), ` Uploading ${file.name} (${formatBytes(file.size)})…`));
    try {
      const model = await api("/models", { method: "POST", form: body });
      if (!alive) return;
      toast(`Uploaded ${model.name}.`);
      form.reset(); // a second click would upload the same file again
      file = null;
      clear(chosen);
      follow(model, Date.now());
      refreshList();
    } catch (error) {
      if (!alive) return;
      status.hidden = true;
      clear(status);
      clear(formError, errorBox(error.message));
    } finally {
      submit.disabled = false;
      submit.textContent = "Upload model";
    }
  }

  function showStatus(...children) {
    status.hidden = false;
    clear(status, ...children);
  }

  function follow(model, since) {
    clearTimeout(pollTimer);
    if (WAITING.has(model.status)) {
      const slow = Date.now() - since > SLOW_MS;
      showStatus(
        h("h3", {}, model.name, " ", badge(model.status)),
        h("p.cl-progress-line", {}, h("progress", { "aria-label": "Validating the model" }), " ", STATUS_WORDS[model.status]),
        slow ? h("p.muted", {}, "Still waiting: the workers may be busy with an analysis. This page keeps checking.") : null,
      );
      pollTimer = setTimeout(async () => {
        try {
          const next = await api(`/models/${model.id}`);
          if (alive) follow(next, since);
        } catch (error) {
          if (alive) showStatus(h("h3", {}, model.name), errorBox(error.message));
        }
      }, POLL_MS);
      return;
    }
    refreshList();
    if (model.status === "failed") {
      showStatus(h("h3", {}, model.name, " ", badge(model.status)), errorBox(model.error || "The model could not be validated."));
      return;
    }
    showStatus(
      h("h3", {}, model.name, " ", badge(model.status)),
      h(
        "dl.cl-facts",
        {},
        h("dt", {}, "Format"),
        h("dd", {}, model.format || "—"),
        h("dt", {}, "Input shape"),
        h("dd", {}, formatShape(model.input_shape)),
        h("dt", {}, "Classes"),
        h("dd", {}, model.num_classes ?? "—"),
        h("dt", {}, "Layers"),
        h("dd", {}, model.layers ? String(model.layers.length) : "—"),
      ),
      h("div.cl-actions", {}, h("a.cl-btn.primary", { href: `#/new?model=${model.id}` }, "Analyse this model")),
    );
  }

  async function refreshList() {
    clearTimeout(listTimer);
    try {
      const rows = newestFirst((await api("/models")).data).filter(listedModel);
      if (!alive) return;
      renderList(rows);
      if (rows.some((m) => WAITING.has(m.status))) listTimer = setTimeout(refreshList, 1500);
    } catch (error) {
      if (alive) clear(list, errorBox(error.message));
    }
  }

  function renderList(rows) {
    list.removeAttribute("aria-busy");
    if (!rows.length) {
      clear(list, h("p.muted", {}, "No models yet. Upload one above: an ONNX file is the simplest start."));
      return;
    }
    clear(list, h("ul.cl-rows", {}, rows.map(modelRow)));
  }

  function modelRow(m) {
    const rowError = h("div", { "aria-live": "assertive" });
    const labels = m.labels?.length
      ? `labels: ${m.labels.slice(0, 6).join(", ")}${m.labels.length > 6 ? `, … (${m.labels.length})` : ""}`
      : null;
    const del = m.builtin
      ? null
      : deleteButton({
          what: "model", name: m.name, path: `/models/${m.id}`, errorTarget: rowError,
          warning: "Its analyses are deleted with it.", isAlive: () => alive,
          onDeleted: refreshList,
        });
    return h(
      "li.cl-row",
      { dataset: { modelId: m.id } },
      h("div.cl-row-main", {}, h("strong", {}, m.name), m.builtin ? h("span.cl-tag", {}, "built-in demo") : null, " ", badge(m.status)),
      h(
        "div.cl-row-meta.muted",
        {},
        [
          m.format || "format not known yet",
          formatShape(m.input_shape),
          m.num_classes ? `${m.num_classes} classes` : null,
          formatBytes(m.size_bytes),
          m.train_samples ? `trained on the first ${m.train_samples} training digits` : null,
        ]
          .filter(Boolean)
          .join(" · "),
      ),
      labels ? h("div.cl-row-meta.muted", {}, labels) : null,
      m.status === "failed" && m.error ? h("p.cl-row-error", {}, m.error) : null,
      h(
        "div.cl-row-side",
        {},
        m.status === "ready" ? h("a.cl-btn", { href: `#/new?model=${m.id}`, "aria-label": `Analyse with ${m.name}` }, "Analyse") : null,
        del,
      ),
      rowError,
    );
  }

  await refreshList();
  return () => {
    alive = false;
    clearTimeout(pollTimer);
    clearTimeout(listTimer);
  };
}

/** A labelled input with an optional hint below the label. */
function field(id, label, { hint, type = "text", ...attrs } = {}) {
  const name = id.replace(/^model-/, "").replace("-", "_");
  const input = h(`input#${id}`, { type, name, autocomplete: "off", ...attrs, "aria-describedby": hint ? `${id}-hint` : undefined });
  const wrap = h("div.cl-field", {}, h("label", { for: id }, label), input, hint ? h(`small.cl-hint#${id}-hint`, {}, hint) : null);
  return { input, wrap };
}

// Images (#/images): upload PNG/JPEG files, browse the workspace's images and the built-in
// samples, and see an image as a model sees it with a patch grid over it.
import { api, url } from "../api.js";
import { clear, errorBox, formatBytes, formatCount, h, toast } from "../dom.js";
import { GridCanvas } from "../grid.js";
import { crispScale, deleteButton, dropZone, ensureStyles, fileList, intValue, listedModel, loadPicture, newestFirst, thumbPath } from "./styles.js";

const ACCEPT = "image/png,image/jpeg";
const PREVIEW_PX = 224; // a preview canvas is about this many pixels on its long side
const DEFAULT_GRID = 4;

export async function mount(root) {
  ensureStyles();
  let alive = true;
  let files = [];
  let models = [];
  const previews = new Map(); // image id → {modelId, rows, cols}: survives a gallery refresh

  const input = h("input.cl-visually-hidden#image-files", {
    type: "file",
    name: "files",
    multiple: true,
    accept: ACCEPT,
    "aria-describedby": "image-files-hint",
  });
  const chosen = h("div#image-files-chosen", { "aria-live": "polite" });
  const submit = h("button.cl-btn.primary#image-upload", { type: "submit" }, "Upload images");
  const formError = h("div#image-error", { "aria-live": "assertive" });
  const own = h("div#image-gallery", { "aria-busy": "true" }, h("p.muted", {}, "Loading images…"));
  const samples = h("div#sample-gallery", { "aria-busy": "true" });

  input.addEventListener("files", (event) => {
    files = event.detail;
    clear(formError);
    clear(chosen, files.length ? fileList(files) : null);
    submit.textContent = files.length > 1 ? `Upload ${files.length} images` : "Upload images";
  });

  clear(
    root,
    h(
      "div.cl-page.cl-images",
      {},
      h("h1", {}, "Images"),
      h(
        "section.cl-card",
        { "aria-labelledby": "upload-images-title" },
        h("h2#upload-images-title", {}, "Upload images"),
        h(
          "form.cl-form#image-form",
          { novalidate: true, on: { submit: (event) => upload(event) } },
          dropZone({ input, title: "Drop PNG or JPEG images here, or choose files", hint: "One or many at once; if one is refused, none is stored." }),
          h("p.cl-hint#image-files-hint", {}, "Images are resized to each model's input when analysed; the original is kept."),
          chosen,
          h("div.cl-actions", {}, submit),
          formError,
        ),
      ),
      h("section.cl-card", { "aria-labelledby": "own-images-title" }, h("h2#own-images-title", {}, "Your images"), own),
      h(
        "section.cl-card",
        { "aria-labelledby": "sample-images-title" },
        h("h2#sample-images-title", {}, "Built-in samples"),
        h("p.muted", {}, "Digits every workspace can use, with their true label."),
        samples,
      ),
    ),
  );

  async function upload(event) {
    event.preventDefault();
    clear(formError);
    if (!files.length) {
      clear(formError, errorBox("Choose one or more PNG or JPEG images first."));
      input.focus();
      return;
    }
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    submit.disabled = true;
    const label = submit.textContent;
    submit.textContent = "Uploading…";
    submit.setAttribute("aria-busy", "true");
    try {
      const result = await api("/images", { method: "POST", form });
      if (!alive) return;
      toast(`Uploaded ${formatCount(result.count)} image${result.count === 1 ? "" : "s"}.`);
      files = [];
      input.value = "";
      clear(chosen);
      await refresh();
    } catch (error) {
      if (alive) clear(formError, errorBox(error.message));
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
      submit.textContent = files.length ? label : "Upload images";
    }
  }

  async function refresh() {
    const [m, i] = await Promise.allSettled([api("/models"), api("/images")]);
    if (!alive) return;
    models = m.status === "fulfilled" ? m.value.data.filter((x) => listedModel(x) && x.status === "ready" && x.input_shape) : [];
    own.removeAttribute("aria-busy");
    samples.removeAttribute("aria-busy");
    if (i.status === "rejected") {
      clear(own, errorBox(i.reason.message));
      clear(samples);
      return;
    }
    const rows = newestFirst(i.value.data);
    const mine = rows.filter((x) => !x.builtin);
    const builtin = rows.filter((x) => x.builtin).sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
    clear(
      own,
      m.status === "rejected" ? errorBox(`Models for the preview: ${m.reason.message}`) : null,
      mine.length
        ? h("ul.cl-gallery", {}, mine.map(card))
        : h("p.muted.cl-empty-line", {}, "No images uploaded yet. Drop PNG or JPEG files above — the samples below work right away."),
    );
    clear(samples, builtin.length ? h("ul.cl-gallery", {}, builtin.map(card)) : h("p.muted", {}, "No samples are installed."));
  }

  function card(image) {
    const state = previews.get(image.id) || { modelId: "", rows: DEFAULT_GRID, cols: DEFAULT_GRID };
    const view = h("div.cl-image-view");
    const cardError = h("div", { "aria-live": "assertive" });
    const selectId = `preview-model-${image.id}`;
    const select = h(
      "select.preview-model",
      { id: selectId, dataset: { imageId: image.id } },
      h("option", { value: "" }, "— original —"),
      models.map((m) => h("option", { value: m.id, selected: m.id === state.modelId }, `${m.name} (${m.input_shape[1]}×${m.input_shape[2]})`)),
    );
    const rows = numberInput(`preview-rows-${image.id}`, state.rows);
    const cols = numberInput(`preview-cols-${image.id}`, state.cols);
    const gridInputs = h(
      "div.cl-grid-inputs",
      { hidden: true },
      h("div.cl-field.cl-field-compact", {}, h("label", { for: rows.id }, "Grid rows"), rows),
      h("span.cl-times", { "aria-hidden": "true" }, "×"),
      h("div.cl-field.cl-field-compact", {}, h("label", { for: cols.id }, "Columns"), cols),
    );
    let grid = null;

    async function show() {
      const model = models.find((m) => m.id === select.value);
      clear(cardError);
      state.modelId = select.value;
      previews.set(image.id, state);
      if (!model) {
        grid = null;
        gridInputs.hidden = true;
        clear(view, thumbnail(image));
        return;
      }
      const [, height, width] = model.input_shape;
      rows.max = String(height);
      cols.max = String(width);
      state.rows = Math.min(state.rows, height);
      state.cols = Math.min(state.cols, width);
      rows.value = String(state.rows);
      cols.value = String(state.cols);
      const { scale, pixels: k } = crispScale(Math.max(height, width), PREVIEW_PX);
      const canvas = h("canvas.cl-pixels", {
        width: width * k,
        height: height * k,
        role: "img",
        "aria-label": `${image.name} as ${model.name} sees it, with a ${state.rows}×${state.cols} patch grid`,
      });
      grid = new GridCanvas(canvas, { rows: state.rows, cols: state.cols, width, height });
      gridInputs.hidden = false;
      clear(view, canvas);
      try {
        await loadPicture(grid, url(`/images/${image.id}/preview?model_id=${encodeURIComponent(model.id)}&scale=${scale}`));
      } catch (error) {
        if (alive) clear(cardError, errorBox(error.message));
      }
    }

    function regrid() {
      if (!grid) return;
      const r = intValue(rows, 1, Number(rows.max));
      const c = intValue(cols, 1, Number(cols.max));
      if (r === null || c === null) return;
      state.rows = r;
      state.cols = c;
      grid.setGrid({ ...grid.grid, rows: r, cols: c });
      grid.canvas.setAttribute("aria-label", grid.canvas.getAttribute("aria-label").replace(/\d+×\d+ patch grid/, `${r}×${c} patch grid`));
    }

    select.addEventListener("change", show);
    rows.addEventListener("input", regrid);
    cols.addEventListener("input", regrid);
    show();

    const del = image.builtin
      ? null
      : deleteButton({
          what: "image", name: image.name, path: `/images/${image.id}`,
          className: "button.cl-btn.danger.cl-btn-small", errorTarget: cardError,
          warning: "Its analysis results are deleted with it.", isAlive: () => alive,
          onDeleted: () => {
            previews.delete(image.id);
            return refresh();
          },
        });

    return h(
      "li.cl-image-card",
      { dataset: { imageId: image.id } },
      view,
      h(
        "div.cl-image-info",
        {},
        h("strong.cl-image-name", { title: image.name }, image.name),
        image.label != null ? h("span.cl-tag", {}, `label ${image.label}`) : null,
        h("span.muted", {}, `${image.width}×${image.height} · ${image.mode} · ${formatBytes(image.size_bytes)}`),
      ),
      h("div.cl-field.cl-field-compact", {}, h("label", { for: selectId }, "Preview for model"), select),
      gridInputs,
      del ? h("div.cl-actions", {}, del) : null,
      cardError,
    );
  }

  await refresh();
  return () => {
    alive = false;
  };
}

function thumbnail(image) {
  return h("img.cl-pixels", { src: url(thumbPath(image, 160)), alt: image.name, loading: "lazy" });
}

function numberInput(id, value) {
  return h(`input.cl-small-number#${id}`, { type: "number", min: "1", step: "1", value: String(value), inputmode: "numeric" });
}

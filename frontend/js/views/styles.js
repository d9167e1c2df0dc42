// What the views share: their stylesheet (css/views.css, linked once on first use), the file
// drop zone, buttons, and the share-link panel of analyses and component analyses.
import { api } from "../api.js";
import { badge, clear, errorBox, formatBytes, h, toast } from "../dom.js";

// relative to this module, so the stylesheet comes from the same version as the scripts
const HREF = new URL("../../css/views.css", import.meta.url).href;

/** Link css/views.css into the page once. */
export function ensureStyles() {
  if (document.querySelector(`link[href="${HREF}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href: HREF }));
}

/**
 * A chart's "what is this, how to read it" note (issue 13 §1): plain words first, then the
 * formula in monospace, then the seed that defines it ("000"–"004", SCIENCE.md). `words` may
 * be a string or nodes; `spec` keeps an element's classes and id (default "p.cl-hint").
 */
export function note(words, formula, seed, spec = "p.cl-hint") {
  ensureStyles();
  return h(`${spec}`, { "data-seed": seed || undefined }, words,
    formula ? [" ", h("code.cl-formula", {}, formula)] : null,
    seed ? [" ", h("span.cl-seed", {}, `seed ${seed}`)] : null);
}

/** The legend of the red/blue tint that patch overlays use (grid.js POSITIVE, NEGATIVE). */
export function tintLegend(extra) {
  ensureStyles();
  return h("p.cl-hint.cl-tint-legend", { role: "note" },
    h("span.cl-swatch.cl-swatch-pos", { "aria-hidden": "true" }), " red: the set adds to the output, I(S) > 0 · ",
    h("span.cl-swatch.cl-swatch-neg", { "aria-hidden": "true" }), " blue: it takes away, I(S) < 0",
    extra ? [" · ", ...[extra].flat()] : null);
}

/**
 * A drop zone around a real file input: drop files on it, or click / press Enter or Space
 * on the input (it stays focusable, only visually hidden). `onFiles(File[])` gets both.
 */
export function dropZone({ input, title, hint }) {
  const zone = h(
    "label.cl-drop",
    { for: input.id },
    input,
    h("span.cl-drop-title", {}, title),
    h("span.cl-drop-hint", {}, hint),
  );
  let depth = 0; // dragenter/leave fire for every child: count them
  const on = (event, fn) => zone.addEventListener(event, fn);
  on("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    zone.classList.add("dragover");
  });
  on("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  on("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dragover");
  });
  on("drop", (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove("dragover");
    const files = event.dataTransfer.files;
    if (!files.length) return;
    const list = input.multiple ? files : [files[0]];
    try {
      const transfer = new DataTransfer(); // keep the input in step with what was dropped
      for (const file of list) transfer.items.add(file);
      input.files = transfer.files;
    } catch {
      // older browsers: the change event below still carries the files
    }
    input.dispatchEvent(new CustomEvent("files", { detail: [...list] }));
  });
  input.addEventListener("change", () => input.dispatchEvent(new CustomEvent("files", { detail: [...input.files] })));
  return zone;
}

/** "name (12.3 KB)" list items for chosen files. */
export function fileList(files) {
  return h(
    "ul.cl-files",
    { "aria-label": "Chosen files" },
    files.map((file) => h("li", {}, h("span.cl-file-name", {}, file.name), " ", h("span.muted", {}, formatBytes(file.size)))),
  );
}

/** The server writes naive UTC timestamps; read them as UTC. */
export function parseTime(text) {
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`);
}

/** Newest first, by created_at. */
export function newestFirst(rows) {
  return [...rows].sort((a, b) => parseTime(b.created_at) - parseTime(a.created_at));
}

/** "16×16, 1 channel" from [C, H, W]. */
export function formatShape(shape) {
  if (!shape) return "input shape not known yet";
  const [c, height, width] = shape;
  return `${height}×${width}, ${c} channel${c === 1 ? "" : "s"}`;
}

/** A small thumbnail URL path: tiny images enlarged crisply, large ones as uploaded. */
export function thumbPath(image, target = 96) {
  const side = Math.max(image.width, image.height);
  if (side >= target) return `/images/${image.id}/file`;
  const scale = Math.min(8, Math.max(1, Math.ceil(target / side)));
  return `/images/${image.id}/preview?scale=${scale}`;
}

/**
 * Load a picture into a GridCanvas; if it fails, throw the server's own sentence
 * (an <img> only says "cannot decode", the JSON body says why).
 */
export async function loadPicture(grid, src) {
  try {
    await grid.load(src);
  } catch {
    let detail = "The preview could not be loaded.";
    try {
      const response = await fetch(src, { credentials: "same-origin" });
      if (!response.ok) detail = (await response.json()).detail || detail;
    } catch {
      // keep the generic sentence
    }
    throw new Error(detail);
  }
}

/** An input's value as a whole number in [min, max], else null (still being typed, or out of range). */
export function intValue(input, min, max) {
  const text = input.value.trim();
  if (!/^\d+$/.test(text)) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/**
 * Sizes for a crisp preview of a model input whose long side is `side` pixels, about
 * `target` pixels across: the server enlarges by `scale` (≤ 8), the canvas by a whole
 * `factor` more, so every model pixel is the same number of screen pixels.
 */
export function crispScale(side, target) {
  const scale = Math.min(8, Math.max(1, Math.ceil(target / side)));
  const factor = Math.max(1, Math.round(target / (side * scale)));
  return { scale, pixels: scale * factor };
}

/**
 * A Delete button that asks first, calls DELETE `path`, then `onDeleted()`; a refusal is
 * shown in `errorTarget`. `isAlive()` says whether the view is still on screen.
 */
export function deleteButton({ what, name, path, className = "button.cl-btn.danger", errorTarget, onDeleted, isAlive, warning }) {
  return h(className, {
    type: "button",
    "aria-label": `Delete ${what} ${name}`,
    on: {
      click: async (event) => {
        const button = event.currentTarget;
        if (!window.confirm(`Delete the ${what} “${name}”? ${warning}`)) return;
        button.disabled = true;
        try {
          await api(path, { method: "DELETE" });
          if (!isAlive()) return;
          toast(`Deleted ${name}.`);
          await onDeleted();
        } catch (error) {
          button.disabled = false;
          if (isAlive()) clear(errorTarget, errorBox(error.message));
        }
      },
    },
  }, "Delete");
}

/** A button that runs `onClick` once at a time and shows its error as a toast. */
export function button(text, id, onClick) {
  const el = h(`button${id ? `#${id.slice(1)}` : ""}`, { type: "button" }, text);
  el.addEventListener("click", async () => {
    el.disabled = true;
    try {
      await onClick();
    } catch (error) {
      toast(error.message, "error");
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

/** Create, list and revoke read-only links to the result at `prefix` (e.g. "/analyses/{id}"). */
export function sharePanel(prefix, what) {
  const list = h("ul#share-list");
  const out = h("div#share-result", { "aria-live": "polite" });
  async function load() {
    const shares = await api(`${prefix}/shares`);
    clear(list, shares.data.map((s) => h("li", {},
      h("a", { href: s.url, target: "_blank", rel: "noopener" }, s.url), " ",
      s.revoked ? badge("revoked") : button("Revoke", null, async () => {
        await api(`/shares/${s.id}`, { method: "DELETE" });
        toast(`The link no longer opens this ${what}.`);
        await load();
      }))));
  }
  const create = button("Share a read-only link", "#share", async () => {
    const share = await api(`${prefix}/shares`, { method: "POST" });
    let copied = false;
    try {
      await navigator.clipboard.writeText(share.url);
      copied = true;
    } catch {
      // clipboard needs a secure context; the link is shown either way
    }
    clear(out, h("p", {}, copied ? "Copied: " : "Link: ", h("a#share-url", { href: share.url }, share.url)));
    await load();
  });
  load().catch((error) => clear(out, errorBox(error.message)));
  return h("section.card", { "aria-labelledby": "share-title" },
    h("h2#share-title", {}, "Share"), create, out, list);
}

/** A term and its value in a results header (`kind`: "ok" or "warn" colours the value). */
export function fact(term, value, kind) {
  return h(`div.fact${kind ? `.${kind}` : ""}`, {}, h("span.muted", {}, term), h("strong", {}, value));
}

/** Models to offer in model pickers and lists: all but the checkpoints of the built-in
 * training series and of training runs (series "<name> (training run <id>)"), which the
 * learning-dynamics mode offers as a series and the run's page links to. */
export function listedModel(model) {
  return !(model.series && (model.builtin || model.series.includes("(training run ")));
}

/** A file input that uploads an image set (a .zip: class/image.png, or flat) with POST
 * /api/datasets, then adds it to `select` and selects it; a refusal shows the server's
 * sentence beside it. Element ids start with `prefix` ("comp": #comp-dataset-file …); with
 * `labelledOnly`, an unlabelled set is uploaded but not offered (the select lists labelled sets). */
export function uploadDatasetField(select, isAlive, prefix, { labelledOnly = false } = {}) {
  const input = h(`input#${prefix}-dataset-file`, { type: "file", accept: ".zip,application/zip", "aria-describedby": `${prefix}-dataset-hint ${prefix}-dataset-status` });
  const status = h(`div#${prefix}-dataset-status`, { "aria-live": "polite" });
  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    form.append("name", file.name.replace(/\.zip$/i, ""));
    input.disabled = true;
    clear(status, h("p.muted", {}, `Uploading ${file.name}…`));
    try {
      const set = await api("/datasets", { method: "POST", form });
      if (!isAlive()) return;
      if (labelledOnly && !set.labelled) {
        clear(status, errorBox(`${set.name} has no labels (one folder per class), so it cannot be used here; it is stored with your image sets.`));
        return;
      }
      select.append(h("option", { value: set.id }, `${set.name} (${set.n_images} images)`));
      select.value = set.id;
      clear(status, h("p.muted", {}, `Uploaded ${set.name}: ${set.n_images} images, selected.`));
    } catch (e) {
      if (isAlive()) clear(status, errorBox(e.message));
    } finally {
      input.disabled = false;
      input.value = "";
    }
  });
  return h("div.field", {},
    h("label", { for: `${prefix}-dataset-file` }, "Upload an image set (.zip)"),
    input,
    h(`small.muted#${prefix}-dataset-hint`, {}, labelledOnly ? "One folder per class (class/image.png); PNG or JPEG." : "One folder per class (class/image.png), or images at the top level; PNG or JPEG."),
    status);
}

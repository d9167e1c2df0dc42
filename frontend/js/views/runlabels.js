// A run's name, note and tags (issue 13 §2): shown under a result's title, edited in place
// (PATCH `path` with {name, note, tags}); used by analyses and component analyses.
import { api } from "../api.js";
import { ensureStyles } from "./styles.js";
import { clear, errorBox, h, toast } from "../dom.js";

/** Tags typed as "a, b, c" → ["a", "b", "c"] (blanks dropped). */
export function parseTags(text) {
  return text.split(",").map((t) => t.trim()).filter(Boolean);
}

/** Tag chips; `onClick(tag)` makes each a button (e.g. to filter a list by it). */
export function tagChips(tags, onClick) {
  return (tags || []).map((tag) => onClick
    ? h("button.cl-tag.run-tag", { type: "button", title: `Show only runs tagged “${tag}”`, on: { click: () => onClick(tag) } }, tag)
    : h("span.cl-tag.run-tag", {}, tag));
}

/**
 * The panel: the run's name, note and tags, with an Edit button that swaps in a form.
 * `onSaved(run)` gets the updated run (e.g. to retitle the page).
 */
export function labelsPanel({ path, run, onSaved = () => {} }) {
  ensureStyles();
  const box = h("div.run-labels#run-labels");
  let current = { name: run.name, note: run.note, tags: run.tags || [] };

  function show() {
    const edit = h("button#edit-labels", { type: "button" }, current.name || current.note || current.tags.length ? "Edit name, note, tags" : "Name, note, tags…");
    edit.addEventListener("click", form);
    clear(box,
      current.note ? h("p.run-note#run-note", {}, current.note) : null,
      current.tags.length ? h("p.run-tags#run-tags", {}, "Tags: ", tagChips(current.tags)) : null,
      edit);
  }

  function form() {
    const name = h("input#label-name", { type: "text", maxlength: 200, value: current.name || "", placeholder: "e.g. zero baseline, 3×3" });
    const note = h("textarea#label-note", { rows: 2, maxlength: 5000, placeholder: "what you tried, what you saw" }, current.note || "");
    const tags = h("input#label-tags", { type: "text", value: current.tags.join(", "), placeholder: "comma-separated, e.g. paper, baseline" });
    const error = h("div", { "aria-live": "polite" });
    const save = h("button.primary#save-labels", { type: "submit" }, "Save");
    const cancel = h("button#cancel-labels", { type: "button", on: { click: show } }, "Cancel");
    const formEl = h("form.run-label-form", { "aria-label": "Name, note and tags" },
      h("label", {}, "Name ", name),
      h("label", {}, "Note ", note),
      h("label", {}, "Tags ", tags),
      h("div.actions", {}, save, cancel),
      error);
    formEl.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        const body = { name: name.value, note: note.value, tags: parseTags(tags.value) };
        const updated = await api(path, { method: "PATCH", body });
        current = { name: updated.name, note: updated.note, tags: updated.tags || [] };
        toast("Saved.");
        onSaved(updated);
        show();
      } catch (e) {
        save.disabled = false;
        clear(error, errorBox(e.message));
      }
    });
    clear(box, formEl);
    name.focus();
  }

  show();
  return box;
}

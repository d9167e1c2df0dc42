// A multi-image analysis read as a data set (issue 13 §2): J(m) and sparsity split by true
// and by predicted label, and the images whose curve deviates most from the set's.
import { api, url } from "../api.js";
import { ensureStyles, note } from "./styles.js";
import { clear, errorBox, h, plot } from "../dom.js";

/** What each chart of the data-set view shows and how to read it: plain words, the formula,
 * the seed — the arguments of note(). */
export const DATASET_NOTES = {
  curve: ["How strongly pairs of patches cooperate at order m for each group of images, relative to the average over m, with all images in black. A group whose curve leaves the black one at low or high orders relies on simpler or more complex patch contexts than the rest.",
    "J(m) = E_{x∈group} E_{i,j} |I^(m)(i,j|x)| / mean_m", "000"],
  sparsity: ["For each group: the share of all sets of each order that are salient, averaged over its images; the legend gives the share over all orders. Lower is sparser: fewer concepts explain the output.",
    "R^(k) / C(n, k), salient: |I(S)| ≥ τ · max|I|", "002"],
  deviating: ["The images whose curve is farthest from the set's: where the model treats an image unlike the others. Open one to see its patches.",
    "mean_m |J_image(m) − J_set(m)|", "000"],
};

/**
 * The section, drawn once visible data arrives; `prefix` is the analysis's API root
 * (empty in a share link's page), `openImage(itemId)` shows an image's own results.
 */
export function datasetSection(prefix, openImage) {
  ensureStyles();
  const by = h("select#dataset-by", { "aria-label": "split the images by" },
    h("option", { value: "true" }, "true label"), h("option", { value: "predicted" }, "predicted label"));
  const curve = h("div.figure#dataset-curve");
  const sparsity = h("div.figure#dataset-sparsity");
  const deviating = h("div.figure#dataset-deviating");
  const list = h("ol.dataset-deviating#dataset-deviating-list");
  const status = h("div", { "aria-live": "polite" });
  const section = h("section.card#dataset-view", { "aria-labelledby": "dataset-title" },
    h("h2#dataset-title", {}, "Across the images"),
    h("p.muted", {}, "The images of this analysis as a data set: split by their label, and the ones that stand out."),
    h("label", {}, "Split by ", by), status,
    h("div.charts.dataset-charts", {},
      h("div.card", {}, curve, note(...DATASET_NOTES.curve)),
      h("div.card", {}, sparsity, note(...DATASET_NOTES.sparsity))),
    h("div.card", {}, deviating, note(...DATASET_NOTES.deviating), list));
  let view = null;
  const drawSplit = () => {
    const key = by.value;
    if (!view[key].length) {
      clear(status, h("p.muted", {}, key === "true" ? "These images have no true labels (uploaded without one): split by the predicted label." : "No predictions."));
    } else clear(status);
    plot(curve, view.figures[`${key}_curve`], { name: `j-by-${key}-label` });
    plot(sparsity, view.figures[`${key}_sparsity`], { name: `sparsity-by-${key}-label` });
  };
  by.addEventListener("change", drawSplit);
  async function draw() {
    try {
      view = await api(`${prefix}/dataset`);
    } catch (error) {
      clear(section, h("h2", {}, "Across the images"), errorBox(error.message));
      return;
    }
    if (!view.true.length) by.value = "predicted";
    drawSplit();
    plot(deviating, view.figures.deviating, { name: "deviating-images" });
    clear(list, view.deviating.map((row) => h("li", {},
      h("img", { src: url(`${prefix}/items/${row.item_id}/image?scale=4`), alt: "", width: 32, height: 32, loading: "lazy" }),
      " ",
      h("button.linklike", { type: "button", on: { click: () => openImage(row.item_id) } },
        `true ${row.true ?? "–"}, predicted ${row.predicted ?? "–"}`),
      h("span.muted", {}, ` · deviation ${row.deviation.toPrecision(3)} · ${(100 * row.salient_share).toFixed(1)} % salient`))));
  }
  return { section, draw };
}

// A share link, read-only, without cookies: /s/{token} opens an analysis view and
// /s/c/{token} a component analysis view; every call goes under the token (api.js).
import { useShareToken } from "./api.js";
import { clear, errorBox } from "./dom.js";
import * as analysis from "./views/analysis.js";
import * as components from "./views/components.js";

const VIEW = document.querySelector("#view");
const parts = location.pathname.split("/");
const token = decodeURIComponent(parts.pop());
const kind = parts.pop() === "c" ? "components" : "analysis";
useShareToken(token, kind);
const view = kind === "components" ? components : analysis;
view.mount(VIEW, { id: null, query: new URLSearchParams() }, { navigate: () => {} }).catch((error) =>
  clear(VIEW, errorBox(error.message)),
);

// A share link: the analysis view, read-only, every call under /api/shared/{token}.
import { useShareToken } from "./api.js";
import { clear, errorBox } from "./dom.js";
import { mount } from "./views/analysis.js";

const VIEW = document.querySelector("#view");
const token = decodeURIComponent(location.pathname.split("/").pop());
useShareToken(token);
mount(VIEW, { id: null, query: new URLSearchParams() }, { navigate: () => {} }).catch((error) =>
  clear(VIEW, errorBox(error.message)),
);

// Small DOM helpers shared by the screens, and the page's error banner.

/** An element: el("td", {className: "x"}, "text", child, ...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function pct(x, digits = 1) {
  return `${(100 * x).toFixed(digits)}%`;
}

export function num(x, digits = 3) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
}

/** A UTC time from the API in the reader's local time, e.g. "30 Nov 14:02". */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

export function progressBar(percent) {
  const bar = el("div", { className: "bar", role: "progressbar" });
  bar.setAttribute("aria-valuenow", String(Math.round(percent)));
  const fill = el("div");
  fill.style.width = `${Math.max(0, Math.min(100, percent))}%`; // CSSOM: the CSP allows no style attributes
  bar.append(fill);
  return bar;
}

const banner = () => document.getElementById("error");

/** Show an error as a readable message; `source` lets a later success clear it. */
export function showError(error, source = "page") {
  const box = banner();
  box.textContent = error && error.message ? error.message : String(error);
  box.dataset.source = source;
  box.hidden = false;
}

export function clearError(source) {
  const box = banner();
  if (!source || box.dataset.source === source) {
    box.hidden = true;
    box.textContent = "";
  }
}

/** Run an action from a button; its error goes to the banner instead of the console. */
export function guarded(action, source = "action") {
  return async (...args) => {
    try {
      clearError(source);
      await action(...args);
    } catch (error) {
      showError(error, source);
    }
  };
}

/** Files dropped on `zone` or chosen with its `input`, handed to `handle` as an array. */
export function dropZone(zone, input, handle) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    handle([...e.dataTransfer.files]);
  });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    handle(files);
  });
}

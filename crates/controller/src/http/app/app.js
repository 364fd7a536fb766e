// The RedCloud Files web app. Plain ES module, no dependencies: it speaks the controller's HTTP
// API with the user's key from session storage (never a cookie, so no other site can make the
// browser send it) and carries the session token header, so a reload through another
// controller still shows the user's own writes. Every user-supplied string reaches the page
// through textContent only.

const KEY = "redcloud.key";
const USER = "redcloud.user";
const FRONTIER = "redcloud.frontier";
const FRONTIER_HEADER = "x-redcloud-frontier";
const PAGE_ROWS = 100;
const UPLOADS_AT_ONCE = 2;
// The names the server gives conflict copies: `report (conflict 3f2a91c4).pdf`.
const CONFLICT_NAME = / \(conflict [0-9a-f]{8,}(-\d+)?\)(\.[^.]*)?$/;

const $ = (id) => document.getElementById(id);

const state = {
  files: [],
  query: [],
  sort: { key: "name", ascending: true },
  page: 0,
  selected: new Set(),
};

// ---- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

// The sentence of an error body: `detail`, or each validation issue's field and message.
function sentence(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((issue) => `${(issue.loc || []).slice(1).join(".")}: ${issue.msg}`).join("; ");
  }
  return `The server answered ${status}.`;
}

function authHeaders() {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const frontier = sessionStorage.getItem(FRONTIER);
  if (frontier) headers[FRONTIER_HEADER] = frontier;
  return headers;
}

function keepFrontier(value) {
  if (value) sessionStorage.setItem(FRONTIER, value);
}

async function api(method, path, json) {
  const headers = authHeaders();
  const init = { method, headers };
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  keepFrontier(response.headers.get(FRONTIER_HEADER));
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && sessionStorage.getItem(KEY)) {
      signOut("Your session ended (the key was replaced by a newer login). Log in again.");
    }
    throw new ApiError(response.status, sentence(response.status, body), body && body.code);
  }
  return body;
}

// ---- small helpers ----------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function parseTags(text) {
  const seen = new Set();
  for (const tag of text.split(",")) {
    const trimmed = tag.trim();
    if (trimmed) seen.add(trimmed);
  }
  return [...seen];
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
function humanSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

// The API's times are UTC without an offset.
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
function humanDate(text) {
  const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(date.getTime()) ? text : dateFormat.format(date);
}

function notify(message, kind = "info") {
  const notice = $("notice");
  notice.textContent = message;
  notice.className = kind;
}

// ---- signing in and out -----------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
  state.files = [];
  state.selected.clear();
  show();
  if (message) notify(message);
}

async function signIn(event) {
  event.preventDefault();
  const action = event.submitter ? event.submitter.value : "login";
  const username = $("username").value;
  const password = $("password").value;
  $("signin-error").textContent = "";
  if (!username || !password) {
    $("signin-error").textContent = "Enter a username and a password.";
    return;
  }
  try {
    const body = await api("POST", action === "register" ? "/auth/register" : "/auth/login", {
      username,
      password,
    });
    sessionStorage.setItem(KEY, body.api_key);
    sessionStorage.setItem(USER, username);
    $("password").value = "";
    notify(action === "register" ? `Welcome, ${username}.` : `Logged in as ${username}.`);
    show();
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
}

// ---- the query in the URL ---------------------------------------------------------------

function queryFromUrl() {
  const raw = new URLSearchParams(location.search).get("tags") || "";
  return parseTags(raw);
}

function setQuery(tags) {
  state.query = tags;
  state.page = 0;
  state.selected.clear();
  const url = new URL(location.href);
  if (tags.length) url.searchParams.set("tags", tags.join(","));
  else url.searchParams.delete("tags");
  history.pushState(null, "", url);
  return load();
}

// ---- the files --------------------------------------------------------------------------

async function load() {
  const started = performance.now();
  const tags = encodeURIComponent(state.query.join(","));
  try {
    const body = await api("GET", `/files?tags=${tags}`);
    state.files = body.files;
  } catch (error) {
    notify(error.message, "error");
    return;
  }
  const known = new Set(state.files.map((f) => f.file_id));
  for (const id of state.selected) if (!known.has(id)) state.selected.delete(id);
  render();
  // What the browser tests measure: this load's time, and the first view since navigation.
  const body = document.body.dataset;
  body.loadedMs = String(Math.round(performance.now() - started));
  if (!body.firstViewMs) body.firstViewMs = String(Math.round(performance.now()));
  body.loads = String(Number(body.loads || 0) + 1);
}

function sorted() {
  const { key, ascending } = state.sort;
  const files = [...state.files];
  const compare =
    key === "size"
      ? (a, b) => a.size - b.size
      : (a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0);
  files.sort((a, b) => (ascending ? compare(a, b) : compare(b, a)) || (a.file_id < b.file_id ? -1 : 1));
  return files;
}

function render() {
  renderTags();
  renderChips();
  renderTable();
}

function renderChips() {
  const chips = $("chips");
  chips.replaceChildren(
    ...state.query.map((tag) =>
      el(
        "button",
        {
          type: "button",
          class: "chip",
          "aria-label": `Remove ${tag} from the query`,
          onclick: () => setQuery(state.query.filter((t) => t !== tag)),
        },
        el("span", { text: tag }),
        el("span", { "aria-hidden": "true", text: " ×" }),
      ),
    ),
  );
  if (state.query.length) {
    chips.append(
      el("button", { type: "button", class: "link", text: "Show all files", onclick: () => setQuery([]) }),
    );
  }
}

// The tags of the files shown, with counts: picking one narrows the query further.
function renderTags() {
  const counts = new Map();
  for (const file of state.files) {
    for (const tag of file.tags) counts.set(tag, (counts.get(tag) || 0) + 1);
  }
  const items = [...counts.entries()]
    .filter(([tag]) => !state.query.includes(tag))
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([tag, count]) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "tag",
            "aria-label": `${tag}: ${count} file${count === 1 ? "" : "s"}`,
            onclick: () => setQuery([...state.query, tag]),
          },
          el("span", { text: tag }),
          el("span", { class: "count", text: String(count) }),
        ),
      ),
    );
  $("tags").replaceChildren(...items);
}

function renderTable() {
  const files = sorted();
  const pages = Math.max(1, Math.ceil(files.length / PAGE_ROWS));
  state.page = Math.min(state.page, pages - 1);
  const first = state.page * PAGE_ROWS;
  const shown = files.slice(first, first + PAGE_ROWS);
  $("rows").replaceChildren(...shown.map(row));
  $("count").textContent = `(${files.length.toLocaleString()})`;
  $("empty").hidden = files.length > 0;
  $("page").textContent = files.length
    ? `${(first + 1).toLocaleString()}–${(first + shown.length).toLocaleString()} of ${files.length.toLocaleString()}`
    : "";
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
  const allSelected = shown.length > 0 && shown.every((f) => state.selected.has(f.file_id));
  $("select-all").checked = allSelected;
  for (const th of document.querySelectorAll("th[aria-sort]")) th.removeAttribute("aria-sort");
  const active = document.querySelector(`button[data-sort="${state.sort.key}"]`);
  active.parentElement.setAttribute("aria-sort", state.sort.ascending ? "ascending" : "descending");
  updateToolbar();
}

function row(file) {
  const conflict = CONFLICT_NAME.test(file.name);
  const id = file.file_id;
  const check = el("input", {
    type: "checkbox",
    "aria-label": `Select ${file.name}`,
    checked: state.selected.has(id),
    onchange: (event) => {
      if (event.target.checked) state.selected.add(id);
      else state.selected.delete(id);
      updateToolbar();
    },
  });
  const name = el("td", { class: "name" }, el("span", { text: file.name }));
  if (conflict) {
    name.append(
      el("span", {
        class: "badge",
        title: "Uploaded under the same name on another side of a network partition: both were kept.",
        text: "conflict copy",
      }),
    );
  }
  const tags = el(
    "td",
    { class: "file-tags" },
    ...file.tags.map((tag) => el("span", { class: "pill", text: tag })),
  );
  const actions = el(
    "td",
    { class: "actions-cell" },
    el("button", { type: "button", class: "small", text: "Download", "aria-label": `Download ${file.name}`, onclick: () => download([file]) }),
    el("button", { type: "button", class: "small", text: "+ Tag", "aria-label": `Add tags to ${file.name}`, onclick: () => addTags([file]) }),
    el("button", { type: "button", class: "small", text: "− Tag", "aria-label": `Remove tags from ${file.name}`, onclick: () => removeTags([file]) }),
    el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${file.name}`, onclick: () => remove([file]) }),
  );
  return el(
    "tr",
    { "data-id": id },
    el("td", { class: "check" }, check),
    name,
    el("td", { class: "num", text: humanSize(file.size), title: `${file.size} bytes` }),
    el("td", { text: humanDate(file.created_at), title: `${file.created_at} UTC` }),
    tags,
    actions,
  );
}

function selectedFiles() {
  return state.files.filter((f) => state.selected.has(f.file_id));
}

function updateToolbar() {
  const none = state.selected.size === 0;
  for (const id of ["sel-download", "sel-add", "sel-remove", "sel-delete"]) $(id).disabled = none;
}

// ---- actions on files -------------------------------------------------------------------

async function download(files) {
  for (const file of files) {
    try {
      const response = await fetch(`/files/${file.file_id}/download`, { headers: authHeaders() });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, sentence(response.status, body));
      }
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: file.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      notify(`${file.name}: ${error.message}`, "error");
      return;
    }
  }
  notify(files.length === 1 ? `Downloaded ${files[0].name}.` : `Downloaded ${files.length} files.`);
}

function askTags(title, help) {
  const dialog = $("tag-dialog");
  $("tag-dialog-title").textContent = title;
  $("tag-dialog-help").textContent = help;
  $("tag-dialog-input").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "apply" ? parseTags($("tag-dialog-input").value) : null),
      { once: true },
    );
  });
}

// Runs `change` on each file; reports each failure by name with the server's sentence.
async function eachFile(files, change, done) {
  const failures = [];
  for (const file of files) {
    try {
      await change(file);
    } catch (error) {
      // The server's sentence names the file when it can; otherwise say which one failed.
      failures.push(error.message.includes(file.name) ? error.message : `${file.name}: ${error.message}`);
    }
  }
  await load();
  if (failures.length) notify(failures.join(" "), "error");
  else notify(done);
}

async function addTags(files) {
  const tags = await askTags(
    files.length === 1 ? `Add tags to ${files[0].name}` : `Add tags to ${files.length} files`,
    "The files keep their other tags.",
  );
  if (!tags || !tags.length) return;
  await eachFile(
    files,
    (file) => api("POST", `/files/${file.file_id}/tags`, { tags }),
    `Added ${tags.join(", ")}.`,
  );
}

async function removeTags(files) {
  const tags = await askTags(
    files.length === 1 ? `Remove tags from ${files[0].name}` : `Remove tags from ${files.length} files`,
    "A file always keeps at least one tag: a file that would be left with none is not changed.",
  );
  if (!tags || !tags.length) return;
  await eachFile(
    files,
    (file) => api("DELETE", `/files/${file.file_id}/tags`, { tags }),
    `Removed ${tags.join(", ")}.`,
  );
}

async function remove(files) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent =
    files.length === 1 ? `Delete ${files[0].name}?` : `Delete ${files.length} files?`;
  $("confirm-text").textContent = "Deleted files cannot be brought back.";
  dialog.returnValue = "";
  dialog.showModal();
  const answer = await new Promise((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }),
  );
  if (answer !== "confirm") return;
  await eachFile(
    files,
    (file) => api("DELETE", `/files/${file.file_id}`),
    files.length === 1 ? `Deleted ${files[0].name}.` : `Deleted ${files.length} files.`,
  );
}

// ---- uploads ----------------------------------------------------------------------------

let pending = [];

function chooseFiles(list) {
  pending = [...list];
  $("uploads").replaceChildren(
    ...pending.map((file) => el("li", { class: "upload" }, el("span", { text: `${file.name} — ${humanSize(file.size)}, ready` }))),
  );
  $("upload-tags").focus();
}

function uploadOne(file, tags, item) {
  const progress = el("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
  const status = el("span", { text: "uploading…" });
  item.replaceChildren(el("span", { class: "upload-name", text: file.name }), progress, status);
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/files");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((100 * event.loaded) / event.total);
    });
    request.addEventListener("load", () => {
      keepFrontier(request.getResponseHeader(FRONTIER_HEADER));
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status === 201) {
        progress.value = 100;
        status.textContent = body.replaced_file_id ? "stored (replaced the earlier file)" : "stored";
        item.className = "upload done";
        resolve(true);
      } else {
        status.textContent = sentence(request.status, body);
        item.className = "upload failed";
        resolve(false);
      }
    });
    request.addEventListener("error", () => {
      status.textContent = "The connection failed before the server answered.";
      item.className = "upload failed";
      resolve(false);
    });
    const form = new FormData();
    form.append("tags", tags.join(","));
    form.append("file", file, file.name);
    request.send(form);
  });
}

async function upload(event) {
  event.preventDefault();
  const tags = parseTags($("upload-tags").value);
  if (!pending.length) {
    notify("Choose or drop the files to upload first.", "error");
    return;
  }
  if (!tags.length) {
    notify("Give the files at least one tag.", "error");
    $("upload-tags").focus();
    return;
  }
  const files = pending;
  pending = [];
  const items = files.map(() => el("li", { class: "upload" }));
  $("uploads").replaceChildren(...items);
  let next = 0;
  let stored = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      if (await uploadOne(files[i], tags, items[i])) stored += 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(UPLOADS_AT_ONCE, files.length) }, worker));
  $("file-input").value = "";
  notify(`${stored} of ${files.length} file${files.length === 1 ? "" : "s"} stored.`, stored === files.length ? "info" : "error");
  await load();
}

// ---- wiring -----------------------------------------------------------------------------

function show() {
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  $("signin").hidden = signedIn;
  $("files-view").hidden = !signedIn;
  $("account").hidden = !signedIn;
  $("who").textContent = signedIn ? sessionStorage.getItem(USER) || "" : "";
  if (signedIn) {
    state.query = queryFromUrl();
    load();
  } else {
    $("username").focus();
  }
}

function wire() {
  $("signin-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut("Logged out."));
  $("file-input").addEventListener("change", (event) => chooseFiles(event.target.files));
  $("upload-form").addEventListener("submit", upload);
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    chooseFiles(event.dataTransfer.files);
  });
  for (const button of document.querySelectorAll("button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      state.sort = { key, ascending: state.sort.key === key ? !state.sort.ascending : true };
      renderTable();
    });
  }
  $("prev").addEventListener("click", () => {
    state.page -= 1;
    renderTable();
  });
  $("next").addEventListener("click", () => {
    state.page += 1;
    renderTable();
  });
  $("select-all").addEventListener("change", (event) => {
    for (const tr of $("rows").children) {
      if (event.target.checked) state.selected.add(tr.dataset.id);
      else state.selected.delete(tr.dataset.id);
    }
    renderTable();
  });
  $("sel-download").addEventListener("click", () => download(selectedFiles()));
  $("sel-add").addEventListener("click", () => addTags(selectedFiles()));
  $("sel-remove").addEventListener("click", () => removeTags(selectedFiles()));
  $("sel-delete").addEventListener("click", () => remove(selectedFiles()));
  window.addEventListener("popstate", () => {
    state.query = queryFromUrl();
    state.page = 0;
    load();
  });
  show();
}

wire();

// ArtyLyze page: plain JS, no build step. Every text from the API goes into the page as
// text (textContent / Node.append of strings), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SORT_NAMES = {
  id: "Index order", title: "Title", artist: "Artist", year: "Oldest first",
  novelty: "Most novel first", confidence: "Least confident first",
};
const PAGE = 48;
let info = null;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const pretty = (label) => String(label ?? "").replaceAll("_", " ");
const pct = (score) => `${Math.round(score * 100)}%`;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message ?? error) : "";
  box.hidden = !error;
}

function bar(name, score, layout = "bar-row") {
  const fill = el("span");
  fill.style.width = `${Math.max(0, Math.min(1, score ?? 0)) * 100}%`;
  return el("div", { class: layout }, el("span", { class: "name", title: pretty(name) },
    pretty(name)), el("div", { class: "bar" }, fill),
    el("span", { class: "pct" }, score === null || score === undefined ? "" : pct(score)));
}

function badge(confident) {
  if (confident === undefined || confident === null) return null;
  return el("span", { class: `badge ${confident ? "ok" : "unsure"}` },
    confident ? "confident" : "unsure");
}

// predicted: {task: [{label, score}]} (or {task: {label, score, confident}} for works)
// human: {task: {label, reviewer, at}}, what people said (a person's label wins)
function labelsView(predicted, estimated = {}, recorded = {}, human = {}) {
  const box = el("div");
  if (estimated.domain && estimated.domain !== "artwork") {  // the model's "not an artwork"
    const sure = estimated.domain_score == null ? "" : ` (${Math.round(estimated.domain_score * 100)}%)`;
    box.append(el("p", { class: "notice" },
      `Not an artwork: looks like a ${estimated.domain}${sure}. No label is confident.`));
  }
  for (const [task, value] of Object.entries(predicted)) {
    const top = Array.isArray(value) ? value : [value];
    const flag = estimated.confident?.[task] ?? (Array.isArray(value) ? null : value.confident);
    const head = el("div", { class: "task-name" }, pretty(task), badge(flag));
    if (recorded[task]) head.append(el("span", { class: "recorded" }, `recorded: ${pretty(recorded[task])}`));
    const said = human[task];
    if (said) {
      head.append(el("span", { class: "reviewed" }, said.label === null
        ? `not ${pretty(said.machine_label)}, says ${said.reviewer}`
        : `${pretty(said.label)}, says ${said.reviewer}`));
    }
    box.append(el("div", { class: "task" }, head, ...top.map((p) => bar(p.label, p.score))));
  }
  for (const [task, said] of Object.entries(human)) {  // tasks only people gave
    if (task in predicted || said.label === null) continue;
    box.append(el("div", { class: "task" }, el("div", { class: "task-name" }, pretty(task),
      el("span", { class: "reviewed" }, `${pretty(said.label)}, says ${said.reviewer}`))));
  }
  const year = estimated.year;
  if (year !== undefined && estimated.year_low !== undefined) {
    box.append(el("p", {}, `Dated about ${year} (${estimated.year_low}–${estimated.year_high})`));
  }
  if (estimated.novelty !== undefined) {
    box.append(el("p", { class: "muted" }, `Novelty ${Number(estimated.novelty).toFixed(2)} ` +
      "(how unlike the styles the model was taught)"));
  }
  return box;
}

function influencesView(top) {
  const box = el("div");
  for (const theme of top) box.append(bar(theme.name, theme.share, "bar-row stacked"));
  if (!top.length) box.append(el("p", { class: "muted" }, "No cluster stands out."));
  return box;
}

function card(work, score) {
  const who = [work.artist, work.year].filter((v) => v !== null && v !== undefined).join(", ");
  const first = Object.entries(work.predicted ?? {})[0];
  const tags = first ? `${pretty(first[1].label)} ${first[1].score !== null ? pct(first[1].score) : ""}` : "";
  const link = el("a", { class: "card", href: `#/works/${Number(work.id)}` },
    el("img", { src: work.thumbnail, alt: work.title ?? work.path, width: 160, height: 160 }),
    score === undefined ? null : el("span", { class: "score" }, Number(score).toFixed(3)),
    el("div", { class: "title" }, work.title ?? work.path),
    work.copies ? el("div", { class: "copies" }, `+${Number(work.copies)} ${work.copies === 1 ? "copy" : "copies"}`) : null,
    who ? el("div", {}, who) : null,
    el("div", { class: "tags" }, tags, first ? badge(first[1].confident) : null));
  link.dataset.id = String(work.id);
  return link;
}

function fillGrid(grid, results) {
  grid.replaceChildren(...results.map((r) => card(r, r.score)));
}

// -- analyse a painting ---------------------------------------------------------------
async function analyse(file) {
  showError(null);
  if (!file) return;
  if (info && file.size > info.limits.max_upload_bytes) {
    showError(`The file is ${file.size.toLocaleString()} bytes; the limit is ` +
      `${info.limits.max_upload_bytes.toLocaleString()}.`);
    return;
  }
  const preview = $("preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("qname").textContent = file.name;
  $("busy").hidden = false;
  const form = () => { const f = new FormData(); f.append("image", file); return f; };
  try {
    const [similar, influence] = await Promise.all([
      api("v1/similar?k=10", { method: "POST", body: form() }),
      api("v1/influence?top=5", { method: "POST", body: form() }),
    ]);
    $("labels").replaceChildren(labelsView(similar.query.predicted, similar.query.estimated));
    $("influences").replaceChildren(influencesView(influence.top));
    $("result").hidden = false;
    $("similar-title").hidden = false;
    fillGrid($("similar"), similar.results);
  } catch (error) {
    showError(error);
  } finally {
    $("busy").hidden = true;
  }
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => analyse(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    analyse(e.dataTransfer.files[0]);
  });
}

// -- browse the collection -------------------------------------------------------------
function browseParams() {
  const query = location.hash.split("?")[1] ?? "";
  return new URLSearchParams(query);
}

function select(name, label, options, value) {
  const box = el("select", { name });
  for (const [v, text] of options) box.append(el("option", { value: v, selected: v === value }, text));
  box.addEventListener("change", () => {
    const params = browseParams();
    if (box.value) params.set(name, box.value); else params.delete(name);
    params.delete("offset");
    location.hash = `#/works?${params}`;
  });
  return el("label", {}, label, box);
}

function filtersView(params, facets) {
  const parts = [];
  for (const task of info.facets) {
    const counts = facets[task] ?? [];
    const options = [["", "any"], ...counts.map((c) => [c.label, `${pretty(c.label)} (${c.count})`])];
    parts.push(select(task, pretty(task), options, params.get(task) ?? ""));
  }
  if (info.confident.length) {
    const c = facets.confident ?? { true: 0, false: 0 };
    parts.push(select("confident", `confident (${pretty(c.task ?? info.confident[0])})`,
      [["", "any"], ["true", `confident (${c.true})`], ["false", `unsure (${c.false})`]],
      params.get("confident") ?? ""));
  }
  parts.push(select("sort", "sort", info.sorts.map((s) => [s, SORT_NAMES[s] ?? s]),
    params.get("sort") ?? "id"));
  const text = el("input", { type: "search", name: "q", value: params.get("q") ?? "",
    placeholder: "title, artist, file" });
  text.addEventListener("change", () => {
    const p = browseParams();
    if (text.value) p.set("q", text.value); else p.delete("q");
    p.delete("offset");
    location.hash = `#/works?${p}`;
  });
  parts.push(el("label", {}, "search", text));
  $("filters").replaceChildren(...parts);
}

async function browse() {
  const params = browseParams();
  const query = new URLSearchParams(params);
  query.set("limit", String(PAGE));
  const page = await api(`v1/works?${query}`);
  filtersView(params, page.facets);
  fillGrid($("works"), page.works);
  $("works").dataset.total = String(page.total);
  const first = page.total ? page.offset + 1 : 0;
  const last = Math.min(page.offset + page.works.length, page.total);
  $("count").textContent = `${page.total.toLocaleString()} works`;
  $("pageinfo").textContent = `${first}–${last} of ${page.total.toLocaleString()}`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.total;
  const move = (delta) => {
    const p = browseParams();
    p.set("offset", String(Math.max(0, page.offset + delta)));
    location.hash = `#/works?${p}`;
  };
  $("prev").onclick = () => move(-PAGE);
  $("next").onclick = () => move(PAGE);
}

// -- one work ----------------------------------------------------------------------------
function factsView(work) {
  const rows = [["file", work.path], ["theme", work.theme]];
  if (work.width) rows.push(["size", `${work.width} × ${work.height} px`]);
  const table = el("table", { class: "facts" });
  for (const [name, value] of rows) {
    if (value !== null && value !== undefined) table.append(el("tr", {}, el("th", {}, name), el("td", {}, String(value))));
  }
  return table;
}

async function showWork(id) {
  const [work, similar] = await Promise.all([api(`v1/works/${id}`),
    api(`v1/works/${id}/similar?k=12`)]);
  const img = $("work-image");
  img.src = work.image ?? work.thumbnail;
  img.classList.toggle("thumb", !work.image);  // shown at its own size, not blown up
  $("work-note").hidden = Boolean(work.image);
  img.alt = work.title ?? work.path;
  $("work-title").textContent = work.title ?? work.path;
  $("work-meta").textContent = [work.artist, work.year].filter((v) => v).join(", ");
  const predicted = work.top && Object.keys(work.top).length ? work.top : work.predicted;
  const flags = Object.fromEntries(Object.entries(work.predicted)
    .filter(([, p]) => p.confident !== undefined).map(([t, p]) => [t, p.confident]));
  const review = work.human === undefined ? [] :  // a review store is attached
    [el("p", {}, el("a", { href: `review#/works/${Number(work.id)}` }, "Review this work"))];
  $("work-labels").replaceChildren(labelsView(predicted, { ...work.estimated, confident: flags },
    work.recorded, work.human ?? {}), factsView(work), ...review);
  fillGrid($("work-similar"), similar.results);
}

// -- routing -------------------------------------------------------------------------------
async function route() {
  showError(null);
  const hash = location.hash || "#/";
  const work = hash.match(/^#\/works\/(\d+)$/);
  const view = work ? "work" : hash.startsWith("#/works") ? "browse" : "analyse";
  for (const id of ["analyse", "browse", "work"]) $(id).hidden = id !== view;
  $("nav-analyse").classList.toggle("active", view === "analyse");
  $("nav-works").classList.toggle("active", view !== "analyse");
  try {
    if (view === "browse") await browse();
    if (view === "work") await showWork(Number(work[1]));
    window.scrollTo(0, 0);
  } catch (error) {
    showError(error);
  }
  document.body.dataset.view = view;
}

async function start() {
  setUpDrop();
  try {
    info = await api("v1/info");
    $("model").textContent = `${info.model} · ${info.works.toLocaleString()} works`;
    $("limits").textContent = `JPEG, PNG, WebP, TIFF, BMP or GIF, up to ` +
      `${Math.floor(info.limits.max_upload_bytes / 1048576)} MB`;
  } catch (error) {
    showError(error);
    return;
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();

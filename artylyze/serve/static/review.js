// ArtyLyze review queue: one work at a time, from the keyboard. Plain JS, no build step;
// every text from the API goes into the page as text, never as HTML. The review token is
// sent in a header (X-Review-Token), never in a URL; it stays in this tab's sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const pretty = (label) => String(label ?? "").replaceAll("_", " ");
const pct = (score) => (score === null || score === undefined ? "" : `${Math.round(score * 100)}%`);
const CUSTOM = "\u0000custom";
const KEYS = 5;

const state = { info: null, queue: [], skipped: new Set(), done: [], current: null, count: 0 };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function showError(error) {
  $("error").textContent = error ? String(error.message ?? error) : "";
  $("error").hidden = !error;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.error?.message ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

function task() {
  const picked = $("task").value;
  return picked === CUSTOM ? $("custom-task").value.trim() : picked;
}

const builtIn = (name) => state.info.tasks.includes(name);

// the labels keys 1-5 pick: the model's top-k for the task, then its other classes
function choices(work, name) {
  const top = (work.top?.[name] ?? []).map((x) => ({ label: x.label, score: x.score }));
  if (!top.length && work.predicted?.[name]) top.push(work.predicted[name]);
  for (const label of state.info.labels[name] ?? []) {
    if (top.length >= KEYS) break;
    if (!top.some((x) => x.label === label)) top.push({ label, score: null });
  }
  return top.slice(0, KEYS);
}

function render() {
  const work = state.current;
  $("work").hidden = !work;
  $("empty").hidden = Boolean(work) || !task();
  $("progress").textContent = `${state.count} reviewed this session`;
  if (!work) return;
  const name = task();
  $("picture").src = work.image ?? work.thumbnail;
  $("picture").alt = work.title ?? work.path;
  $("caption").textContent = [work.title, work.artist, work.path].filter(Boolean).join(" · ");
  const machine = work.predicted?.[name];
  $("machine").textContent = machine
    ? `The model says ${pretty(machine.label)} (${pct(machine.score)})`
    : (builtIn(name) ? "The model gave no label" : `New task “${name}”: type its label`);
  $("why").textContent = ["least confident first", machine?.confident === false ? "the model is unsure" : ""]
    .filter(Boolean).join(" · ");
  $("choices").replaceChildren(...choices(work, name).map((c, i) => el("li", {},
    el("kbd", {}, String(i + 1)), " ", el("span", { class: "name" }, pretty(c.label)),
    el("span", { class: "pct muted" }, pct(c.score)))));
  const human = work.human?.[name];
  $("human").hidden = !human;
  if (human) {
    $("human").textContent = `${human.reviewer} said ${human.label === null ? "not " +
      pretty(human.machine_label) : pretty(human.label)} (${human.action}, ${human.at})`;
  }
  $("labels").replaceChildren(...(state.info.labels[name] ?? []).map((l) => el("option", { value: l })));
  $("label").value = "";
  $("confirm").disabled = !machine;
  $("reject").disabled = !machine;
}

// a work asked for by its link (review#/works/ID) comes before the queue
async function asked() {
  const found = location.hash.match(/^#\/works\/(\d+)$/);
  if (!found) return null;
  history.replaceState(null, "", location.pathname);
  return api(`v1/works/${found[1]}/review`);
}

async function next() {
  showError(null);
  const name = task();
  state.current = null;
  if (!name) { render(); return; }
  const wanted = await asked();
  if (wanted) { state.current = wanted; render(); return; }
  state.queue = state.queue.filter((w) => !state.skipped.has(w.id));
  if (!state.queue.length) {
    const got = await api(`v1/review/queue?task=${encodeURIComponent(name)}&limit=50`);
    state.queue = got.works.filter((w) => !state.skipped.has(w.id));
  }
  state.current = state.queue.shift() ?? null;
  render();
}

// one event for one work; false (and the reason shown) when the service refused it
async function send(work, action, label = null) {
  const reviewer = $("reviewer").value.trim();
  if (!reviewer) {
    showError("Type your name first: every review says who made it.");
    $("reviewer").focus();
    return false;
  }
  try {
    await api(`v1/works/${work.id}/review`, {
      method: "POST", body: JSON.stringify({ task: task(), action, label, reviewer }),
      headers: { "Content-Type": "application/json", "X-Review-Token": $("token").value.trim() },
    });
    return true;
  } catch (e) { showError(e); return false; }
}

async function post(action, label = null) {
  const work = state.current;
  if (!work || !(await send(work, action, label))) return;
  state.done.push(work);
  state.count += 1;
  await next();
}

async function undo() {
  const last = state.done.pop();
  if (!last) { showError("Nothing to undo in this session."); return; }
  if (!(await send(last, "undo"))) { state.done.push(last); return; }
  state.count -= 1;
  if (state.current) state.queue.unshift(state.current);
  delete last.human?.[task()];
  state.current = last;
  showError(null);
  render();
}

function pick(i) {
  const work = state.current;
  const c = work && choices(work, task())[i];
  if (c) post("confirm", c.label);
}

function skip() {
  if (!state.current) return;
  state.skipped.add(state.current.id);
  next().catch(showError);
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const k = event.key;
  if (k >= "1" && k <= String(KEYS)) pick(Number(k) - 1);
  else if (k === "Enter" || k === "c") post("confirm");
  else if (k === "s") skip();
  else if (k === "x") post("reject");
  else if (k === "u") undo().catch(showError);
  else if (k === "/") $("label").focus();
  else return;
  event.preventDefault();
}

async function start() {
  $("reviewer").value = localStorage.getItem("artylyze.reviewer") ?? "";
  $("token").value = sessionStorage.getItem("artylyze.token") ?? "";
  $("reviewer").addEventListener("change", () => localStorage.setItem("artylyze.reviewer", $("reviewer").value.trim()));
  $("token").addEventListener("change", () => sessionStorage.setItem("artylyze.token", $("token").value.trim()));
  try { state.info = await api("v1/review"); } catch (e) { showError(e); return; }
  if (!state.info.writable) showError("Read-only: start the service with --review to record reviews.");
  const options = [...state.info.tasks, ...state.info.custom_tasks].map((t) => el("option", { value: t }, pretty(t)));
  $("task").replaceChildren(...options, el("option", { value: CUSTOM }, "a new task…"));
  const restart = () => { state.queue = []; state.skipped.clear(); next().catch(showError); };
  $("task").addEventListener("change", () => {
    $("custom-box").hidden = $("task").value !== CUSTOM;
    if ($("task").value === CUSTOM) $("custom-task").focus();
    restart();
  });
  $("custom-task").addEventListener("change", restart);
  $("other").addEventListener("submit", (e) => {
    e.preventDefault();
    const label = $("label").value.trim();
    if (label) { $("label").blur(); post(builtIn(task()) ? "correct" : "set", label); }
  });
  $("confirm").addEventListener("click", () => post("confirm"));
  $("skip").addEventListener("click", skip);
  $("reject").addEventListener("click", () => post("reject"));
  $("undo").addEventListener("click", () => undo().catch(showError));
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", () => next().catch(showError));
  await next();
}

start().catch(showError);

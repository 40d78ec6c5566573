// The console's shell: login (an API key kept in sessionStorage), the hash router (#/agent, #/agent?call=ID,
// #/supervisor) and the role shown in the top bar. Every view mounts into #view and returns a cleanup function.
import { api, clearKey, explain, getKey, setKey } from "./api.js";
import { setPolicy } from "./util.js";
import * as agent from "./agent.js";
import * as supervisor from "./supervisor.js";

const ROLE_ZH = { agent: "坐席", supervisor: "班长", platform: "呼叫平台", admin: "管理员" };
const $ = (id) => document.getElementById(id);
let ctx = null; // {key, role, policy}
let cleanup = null;

function showLogin(message = "") {
  ctx = null;
  if (cleanup) { cleanup(); cleanup = null; }
  $("view").replaceChildren();
  $("login").hidden = false;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login-error").textContent = message;
  $("key-input").focus();
}

async function login(key) {
  try {
    const policy = await api("/policy", { key });
    setPolicy(policy);
    setKey(key);
    ctx = { key, role: policy.role, policy };
    $("login").hidden = true;
    $("nav").hidden = false;
    $("who").hidden = false;
    $("role-label").textContent = `角色：${ROLE_ZH[policy.role] || policy.role}`;
    $("role-label").dataset.role = policy.role;
    route();
  } catch (e) {
    clearKey();
    showLogin(explain(e));
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { view: path || "", params: new URLSearchParams(query) };
}

function route() {
  if (!ctx) return;
  const { view, params } = parseHash();
  const name = view === "agent" || view === "supervisor" ? view : (ctx.role === "supervisor" ? "supervisor" : "agent");
  if (view !== name) { location.replace(`#/${name}`); return; }
  if (cleanup) { cleanup(); cleanup = null; }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  const container = $("view");
  container.replaceChildren();
  document.body.dataset.view = name;
  cleanup = (name === "agent" ? agent : supervisor).mount(container, ctx, params) || null;
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("key-input").value.trim();
  if (key) login(key);
});
$("logout").addEventListener("click", () => { clearKey(); showLogin(""); });
window.addEventListener("hashchange", route);

const saved = getKey();
if (saved) login(saved); else showLogin("");

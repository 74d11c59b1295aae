// Kairos console: a single-page app over /api/v1 (no framework, no build step).
//
// Rules kept throughout: user data reaches the DOM only as text nodes or attribute
// values (never innerHTML); every API error is shown next to what caused it; the
// current page refreshes every 2 s while the tab is visible; plots keep their history
// in this tab (sessionStorage), so nothing extra is stored on the broker.
'use strict';

const REFRESH_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;      // what the plots show
const KEEP_MS = WINDOW_MS + 60 * 1000; // what the history keeps
const TOKEN_KEY = 'kairos.console.token';
const HIST_KEY = 'kairos.console.history';
const MAX_LAG_GROUPS = 30;             // groups whose lag the list polls

// ------------------------------------------------------------------------ DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  add(el, children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  add(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'readOnly') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Appends children; strings and numbers become text nodes (this is the escaping). */
function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** After a failed first load: drop the "Loading…" placeholder (the error shows above). */
function unavailable(el) {
  if (el._rendered === undefined && !el._drawn) fill(el, h('p', { class: 'muted' }, 'unavailable'));
}

function fill(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;

function table(testid, head, rows, empty = 'none') {
  const body = rows.length
    ? rows
    : [h('tr', { class: 'empty' }, h('td', { colspan: head.length, class: 'muted' }, empty))];
  return h('table', { testid },
    h('thead', null, h('tr', null, head.map((c) => (c.startsWith('#') ? h('th', { class: 'num' }, c.slice(1)) : h('th', null, c))))),
    h('tbody', null, body));
}

function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', null, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

/** A message line (`kind`: ok | error | info); empty text hides it. */
function msg(testid) {
  return h('div', { class: 'msg', testid, role: 'status', hidden: true });
}
function say(el, kind, ...text) {
  el.className = `msg ${kind}`;
  fill(el, ...text);
  el.hidden = text.length === 0;
}
function sayError(el, err) {
  say(el, 'error', errorText(err));
}
function clearMsg(el) {
  say(el, '');
}

function errorText(err) {
  return err instanceof ApiError ? err.message : `error: ${err && err.message ? err.message : err}`;
}

// ------------------------------------------------------------------------ formatting
const nf = new Intl.NumberFormat('en-US');
function fmtNum(n) {
  return n == null ? '—' : nf.format(n);
}
function fmtBytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 || Number.isInteger(v) ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
function fmtRate(unit) {
  return (v) => (unit === 'B' ? `${fmtBytes(v)}/s` : `${compact(v)}/s`);
}
function compact(v) {
  if (Number.isInteger(v) && v < 1e4) return String(v);
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return v >= 100 || v === 0 ? String(Math.round(v)) : v.toFixed(1);
}
function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}
function fmtTime(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function fmtDuration(ms) {
  if (ms == null) return '—';
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400); s %= 86400;
  const hh = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  const out = d ? `${d}d ${hh}h ${m}m` : hh ? `${hh}h ${m}m ${s}s` : m ? `${m}m ${s}s` : `${s}s`;
  return neg ? `-${out}` : out;
}
function fmtDue(ms) {
  if (ms == null) return '—';
  const left = ms - Date.now();
  return `${fmtTime(ms)} (${left >= 0 ? `in ${fmtDuration(left)}` : `${fmtDuration(-left)} ago`})`;
}

/** "1700000000000" (epoch ms) or a date/time ("2024-05-01 12:00:00", local) -> ms. */
function parseTime(text) {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const ms = Date.parse(t.includes('T') ? t : t.replace(' ', 'T'));
  if (Number.isNaN(ms)) throw new Error(`"${t}" is neither epoch milliseconds nor a date and time`);
  return ms;
}

function intOf(text, what, min = 0) {
  const t = String(text).trim();
  if (!/^-?\d+$/.test(t) || Number(t) < min) throw new Error(`${what} must be an integer ≥ ${min}`);
  return Number(t);
}

/** A long text shown in full on demand. */
function longText(text, limit = 160) {
  if (text == null) return h('span', { class: 'muted' }, 'null');
  if (text.length <= limit) return h('span', { class: 'mono' }, text);
  return h('details', { class: 'long' },
    h('summary', { class: 'mono' }, `${text.slice(0, limit)}… (${fmtNum(text.length)} chars)`),
    h('pre', null, text));
}

// ------------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function token() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const tok = token();
  if (method !== 'GET' && tok) headers.authorization = `Bearer ${tok}`;
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: the console did not answer (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const detail = data && typeof data.error === 'string' ? data.error : text.slice(0, 300) || res.statusText;
    let message = `${res.status} ${res.statusText || ''}: ${detail}`.replace(' :', ':');
    if (res.status === 401) {
      message = `401 Unauthorized: ${detail}. ${token() ? 'The console token in Settings was refused.' : 'This broker needs a console token: enter it in Settings.'}`;
    }
    throw new ApiError(res.status, message, data);
  }
  return data;
}

// ------------------------------------------------------------------------ history (plots)
const hist = loadHistory();

function loadHistory() {
  try {
    const raw = JSON.parse(sessionStorage.getItem(HIST_KEY) || 'null');
    if (raw && Array.isArray(raw.broker) && raw.lag && typeof raw.lag === 'object') return raw;
  } catch { /* a fresh history */ }
  return { cluster: null, broker: [], lag: {} };
}
function saveHistory() {
  try { sessionStorage.setItem(HIST_KEY, JSON.stringify(hist)); } catch { /* full: keep it in memory */ }
}
function trim(points, now) {
  while (points.length && points[0][0] < now - KEEP_MS) points.shift();
}

function recordBroker(b) {
  const now = Date.now();
  if (hist.cluster !== b.cluster_id) {
    hist.cluster = b.cluster_id;
    hist.broker = [];
    hist.lag = {};
  }
  hist.broker.push([now, b.produce_bytes_total, b.produce_records_total, b.fetch_bytes_total, b.started_at_ms]);
  trim(hist.broker, now);
}

/** Per-second rates between successive samples: [[t, v]] for counter column `col`. */
function rates(col) {
  const out = [];
  const s = hist.broker;
  for (let i = 1; i < s.length; i++) {
    const dt = s[i][0] - s[i - 1][0];
    const dv = s[i][col] - s[i - 1][col];
    if (dt <= 0 || s[i][4] !== s[i - 1][4] || dv < 0 || !Number.isFinite(dv)) continue; // a restart
    out.push([s[i][0], (dv * 1000) / dt]);
  }
  return out;
}

function recordLag(group, lag) {
  const now = Date.now();
  const pts = hist.lag[group] || (hist.lag[group] = []);
  if (pts.length && now - pts[pts.length - 1][0] < 500) pts[pts.length - 1] = [now, lag];
  else pts.push([now, lag]);
  trim(pts, now);
  for (const [g, p] of Object.entries(hist.lag)) {
    trim(p, now);
    if (!p.length) delete hist.lag[g];
  }
}

// ------------------------------------------------------------------------ charts (SVG)
function niceCeil(v, binary = false) {
  if (!(v > 0)) return 1;
  if (binary && v >= 1024) {
    let unit = 1024;
    while (v / unit >= 1024) unit *= 1024;
    return niceCeil(v / unit) * unit;
  }
  const e = 10 ** Math.floor(Math.log10(v));
  const f = v / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 4 ? 4 : f <= 5 ? 5 : f <= 8 ? 8 : 10) * e;
}

/**
 * A line chart of the last WINDOW_MS. series: [{key, name, points: [[t, v]]}].
 * The legend carries each series' latest and highest value as data attributes.
 */
function lineChart({ testid, title, series, fmt = fmtNum, minTop = 4, binary = false, wide = false }) {
  const W = wide ? 1200 : 640, H = wide ? 200 : 180, L = 70, R = 12, T = 10, B = 22;
  const now = Date.now();
  const t0 = now - WINDOW_MS;
  const shown = series.map((s) => ({ ...s, points: s.points.filter(([t]) => t >= t0) }));
  let max = 0;
  for (const s of shown) for (const [, v] of s.points) if (v > max) max = v;
  const top = niceCeil(Math.max(max, minTop), binary);
  const x = (t) => L + ((t - t0) / WINDOW_MS) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    g.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: i ? 'grid' : 'axis' }),
      svg('text', { x: L - 6, y: y(v) + 4, class: 'ylab' }, fmt(v)));
  }
  for (let m = 0; m <= WINDOW_MS / 60000; m++) {
    const xx = x(now - m * 60000);
    g.append(svg('line', { x1: xx, x2: xx, y1: T, y2: H - B, class: 'grid' }),
      svg('text', { x: xx, y: H - 6, class: 'xlab' }, m ? `-${m}m` : 'now'));
  }
  let any = false;
  shown.forEach((s, i) => {
    if (!s.points.length) return;
    any = true;
    const pts = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (pts.length === 1) {
      g.append(svg('circle', { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 2.5, class: `dot s${i}` }));
    } else {
      const first = x(s.points[0][0]).toFixed(1);
      const last = x(s.points[s.points.length - 1][0]).toFixed(1);
      const base = y(0).toFixed(1);
      g.append(svg('polygon', { points: `${first},${base} ${pts.join(' ')} ${last},${base}`, class: `area s${i}` }),
        svg('polyline', { points: pts.join(' '), class: `line s${i}`, 'data-series': s.key }));
    }
  });
  if (!any) g.append(svg('text', { x: (L + W) / 2, y: H / 2, class: 'nodata' }, 'collecting samples…'));
  const legend = h('div', { class: 'legend' }, shown.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    const hi = s.points.reduce((m, [, v]) => Math.max(m, v), 0);
    return h('span', { class: 'item', testid: `legend-${s.key}`, 'data-value': last ?? '', 'data-max': hi, 'data-points': s.points.length },
      h('i', { class: `swatch s${i}` }), `${s.name}: `, h('b', null, last == null ? '—' : fmt(last)),
      h('small', { class: 'muted' }, ` (max ${fmt(hi)})`));
  }));
  return h('figure', { class: 'chart-wrap', testid }, h('figcaption', null, title), g, legend);
}

function sparkline(points, testid) {
  const W = 120, H = 26;
  const now = Date.now();
  const pts = points.filter(([t]) => t >= now - WINDOW_MS);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'spark', testid, 'data-points': pts.length });
  if (pts.length < 2) return g;
  const top = niceCeil(Math.max(...pts.map(([, v]) => v)));
  const line = pts.map(([t, v]) => `${(((t - (now - WINDOW_MS)) / WINDOW_MS) * W).toFixed(1)},${(H - 2 - (v / top) * (H - 4)).toFixed(1)}`);
  g.append(svg('polyline', { points: line.join(' '), class: 'line s0' }));
  return g;
}

// ------------------------------------------------------------------------ app state & router
const app = {
  page: null,          // {el, refresh, dispose?}
  paused: false,
  inflight: null,
  broker: null,        // the last /api/v1/broker answer
  brokerError: null,
  brokerPoll: null,    // the promise of the current poll
  marked: new Set(),
};

function mark(name) {
  if (app.marked.has(name)) return;
  app.marked.add(name);
  try { performance.mark(name); } catch { /* old browser */ }
  document.documentElement.dataset[name.replace(/[^a-z]/gi, '')] = '1';
}

async function pollBroker() {
  try {
    const b = await api('GET', '/api/v1/broker');
    app.broker = b;
    app.brokerError = null;
    recordBroker(b);
    updateTabCounts(b);
    const toggle = $('#settings-toggle');
    const need = Boolean(b.auth) && !token();
    toggle.classList.toggle('needs-token', need);
    toggle.title = need ? 'This broker asks for a console token on changes: set it here' : '';
  } catch (e) {
    app.brokerError = e;
  }
}

function updateTabCounts(b) {
  const counts = { topics: b.topics, groups: b.groups, delays: b.delays_pending, views: b.views };
  for (const [tab, n] of Object.entries(counts)) {
    const a = $(`#tabs a[data-tab="${tab}"]`);
    if (!a) continue;
    let c = $('.count', a);
    if (!c) { c = h('span', { class: 'count' }); a.append(c); }
    c.textContent = n == null ? '' : compact(n);
  }
}

const ROUTES = [
  [/^overview$/, overviewPage, 'overview'],
  [/^topics$/, topicsPage, 'topics'],
  [/^topics\/(.+)$/, topicPage, 'topics'],
  [/^groups$/, groupsPage, 'groups'],
  [/^groups\/(.+)$/, groupPage, 'groups'],
  [/^delays$/, delaysPage, 'delays'],
  [/^delays\/(.+)$/, delaysPage, 'delays'],
  [/^views$/, viewsPage, 'views'],
  [/^views\/(.+)$/, viewsPage, 'views'],
  [/^quotas$/, quotasPage, 'quotas'],
];

function route() {
  const path = location.hash.replace(/^#\/?/, '') || 'overview';
  let found = null;
  for (const [re, make, tab] of ROUTES) {
    const m = path.match(re);
    if (m) { found = { make, tab, args: m.slice(1).map((a) => { try { return decodeURIComponent(a); } catch { return a; } }) }; break; }
  }
  if (app.page && app.page.dispose) app.page.dispose();
  for (const a of document.querySelectorAll('#tabs a')) {
    a.classList.toggle('active', Boolean(found) && a.dataset.tab === found.tab);
  }
  const view = $('#view');
  if (!found) {
    app.page = null;
    fill(view, h('div', { class: 'card' }, h('p', { class: 'msg error' }, `No page at #/${path}. `), h('a', { href: '#/overview' }, 'Back to the overview')));
    return;
  }
  app.page = found.make(...found.args);
  view.replaceChildren(app.page.el);
  document.title = `${app.page.title || found.tab} · Kairos`;
  tick(true);
}

/** One refresh: the broker poll (for the plots) and the page's own data. */
async function tick(force = false) {
  if (!force && (app.paused || document.hidden)) return;
  if (app.inflight && !force) return;
  const page = app.page;
  app.brokerPoll = pollBroker();
  const run = (async () => {
    const results = await Promise.allSettled([app.brokerPoll, page && page.refresh ? page.refresh() : null]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) console.warn('refresh failed', failed.reason);
  })();
  app.inflight = run;
  try { await run; } finally { if (app.inflight === run) app.inflight = null; }
  saveHistory();
  const live = $('#live');
  if (app.brokerError) {
    live.className = 'live down';
    live.textContent = app.brokerError.status === 0 ? 'console unreachable' : `broker: ${app.brokerError.status}`;
    live.title = app.brokerError.message;
  } else {
    live.className = app.paused ? 'live paused' : 'live up';
    const d = new Date();
    live.textContent = `${app.paused ? 'paused' : 'live'} · ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    live.title = 'The page refreshes every 2 s while it is visible';
  }
}

/** Runs `fn` (an async action) with the button disabled meanwhile. */
async function busy(button, fn) {
  if (button) button.disabled = true;
  try { return await fn(); } finally { if (button) button.disabled = false; }
}

/** Renders `fn(data)` into `el` unless the data is what was rendered last. */
function renderIf(el, data, fn) {
  const key = JSON.stringify(data);
  if (el._rendered === key) return;
  el._rendered = key;
  fill(el, fn(data));
}

function card(title, testid, ...body) {
  return h('section', { class: 'card', testid }, title ? h('h2', null, title) : null, body);
}

function kv(pairs, testid) {
  return h('dl', { class: 'kv', testid }, pairs.map(([k, v, id]) => [h('dt', null, k), h('dd', { testid: id }, v)]));
}

// ------------------------------------------------------------------------ Overview
function overviewPage() {
  const err = msg('overview-error');
  const info = h('div', { testid: 'broker-info' }, h('p', { class: 'muted' }, 'Loading…'));
  const stats = h('div', { class: 'stats', testid: 'broker-stats' });
  const charts = h('div', { class: 'charts', testid: 'throughput' });
  const storage = h('div', { testid: 'storage' });
  const storageErr = msg('storage-error');
  const el = h('div', { class: 'page', testid: 'page-overview' },
    err,
    card('Broker', 'card-broker', info, stats),
    card('Throughput', 'card-throughput', charts),
    card('Storage', 'card-storage', storageErr, storage));

  async function refresh() {
    const topicsP = api('GET', '/api/v1/topics').then((r) => [r, null], (e) => [null, e]);
    await app.brokerPoll;
    const b = app.broker;
    if (app.brokerError) { sayError(err, app.brokerError); unavailable(info); } else clearMsg(err);
    if (b) {
      renderIf(info, { ...b, uptime_ms: Math.floor(b.uptime_ms / 1000) }, () => kv([
        ['Version', b.version, 'broker-version'],
        ['Cluster id', b.cluster_id, 'broker-cluster'],
        ['Node id', b.node_id],
        ['Kafka listener', b.listen, 'broker-listen'],
        ['Advertised', b.advertised],
        ['Console', b.console],
        ['Data directory', h('span', { class: 'mono' }, b.data_dir)],
        ['Started', fmtTime(b.started_at_ms)],
        ['Uptime', fmtDuration(b.uptime_ms), 'broker-uptime'],
      ], 'broker-kv'));
      renderIf(stats, b, () => [
        stat('Topics', fmtNum(b.topics), 'stat-topics', '#/topics'),
        stat('Partitions', fmtNum(b.partitions), 'stat-partitions'),
        stat('Log size', fmtBytes(b.log_size_bytes), 'stat-log-size'),
        stat('Connections', fmtNum(b.connections), 'stat-connections'),
        stat('Groups', fmtNum(b.groups), 'stat-groups', '#/groups'),
        stat('Views', fmtNum(b.views), 'stat-views', '#/views'),
        stat('Delays pending', fmtNum(b.delays_pending), 'stat-delays', '#/delays'),
        stat('Produced', fmtBytes(b.produce_bytes_total), 'stat-produced'),
        stat('Records produced', fmtNum(b.produce_records_total), 'stat-produced-records'),
        stat('Fetched', fmtBytes(b.fetch_bytes_total), 'stat-fetched'),
      ]);
    }
    fill(charts,
      lineChart({
        testid: 'throughput-bytes', title: 'Bytes per second', fmt: fmtRate('B'), minTop: 1024, binary: true,
        series: [{ key: 'produce-bytes', name: 'produced', points: rates(1) },
          { key: 'fetch-bytes', name: 'fetched', points: rates(3) }],
      }),
      lineChart({
        testid: 'throughput-records', title: 'Records produced per second', fmt: fmtRate('rec'), minTop: 10,
        series: [{ key: 'produce-records', name: 'produced', points: rates(2) }],
      }));
    const [t, e] = await topicsP;
    if (e) { sayError(storageErr, e); return; }
    clearMsg(storageErr);
    const top = [...t.topics].sort((a, z) => z.bytes - a.bytes).slice(0, 10);
    const max = Math.max(1, ...top.map((x) => x.bytes));
    renderIf(storage, { top, total: b && b.log_size_bytes }, () => [
      h('p', null, 'Log size on disk: ', h('b', { testid: 'storage-total' }, b ? fmtBytes(b.log_size_bytes) : '—'),
        ` in ${fmtNum(t.topics.length)} topics. Largest:`),
      top.length ? h('div', { class: 'bars', testid: 'storage-bars' }, top.map((x) => {
        const bar = h('span', { class: 'bar' });
        bar.style.width = `${Math.max(0.5, (100 * x.bytes) / max)}%`;
        return h('div', { class: 'bar-row' },
          h('a', { href: `#/topics/${enc(x.name)}`, class: 'bar-name' }, x.name),
          h('span', { class: 'bar-track' }, bar),
          h('span', { class: 'bar-val' }, `${fmtBytes(x.bytes)} · ${fmtNum(x.records)} rec`));
      })) : h('p', { class: 'muted' }, 'No topics yet.'),
    ]);
    mark('kairos:first-data');
  }
  return { el, refresh, title: 'Overview' };
}

function sourceName(s) {
  return { DYNAMIC_TOPIC_CONFIG: 'this topic', STATIC_BROKER_CONFIG: 'broker', DEFAULT_CONFIG: 'default' }[s] || s || '';
}

function stat(label, value, testid, href) {
  const v = h('div', { class: 'stat-value', testid }, value);
  return h(href ? 'a' : 'div', { class: 'stat', href }, v, h('div', { class: 'stat-label' }, label));
}

// ------------------------------------------------------------------------ Topics
function parseConfigs(text) {
  const configs = {};
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l || l.startsWith('#')) return;
    const eq = l.indexOf('=');
    if (eq <= 0) throw new Error(`configs line ${i + 1}: expected key=value`);
    configs[l.slice(0, eq).trim()] = l.slice(eq + 1).trim();
  });
  return configs;
}

function topicsPage() {
  const name = h('input', { name: 'name', required: true, testid: 'create-topic-name', placeholder: 'orders', autocomplete: 'off' });
  const parts = h('input', { name: 'partitions', type: 'number', min: 1, value: '1', testid: 'create-topic-partitions' });
  const configs = h('textarea', { name: 'configs', rows: 2, testid: 'create-topic-configs', placeholder: 'retention.ms=86400000\ncleanup.policy=delete' });
  const createMsg = msg('create-topic-msg');
  const submit = h('button', { type: 'submit', testid: 'create-topic-submit' }, 'Create topic');
  const form = h('form', { class: 'inline-form', testid: 'create-topic-form', autocomplete: 'off' },
    field('Name', name), field('Partitions', parts), field('Configs (key=value per line)', configs), submit);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        const body = { name: name.value.trim(), partitions: intOf(parts.value, 'partitions', 1), configs: parseConfigs(configs.value) };
        const t = await api('POST', '/api/v1/topics', body);
        say(createMsg, 'ok', 'Created topic ', h('a', { href: `#/topics/${enc(t && t.name ? t.name : body.name)}` }, body.name),
          ` with ${body.partitions} partition${body.partitions === 1 ? '' : 's'}.`);
        name.value = '';
        configs.value = '';
        await refresh();
      } catch (e) {
        sayError(createMsg, e);
      }
    });
  });

  const filter = h('input', { type: 'search', placeholder: 'filter by name', testid: 'topics-filter', oninput: () => draw() });
  const internal = h('input', { type: 'checkbox', testid: 'topics-internal', onchange: () => draw() });
  const err = msg('topics-error');
  const count = h('span', { class: 'muted', testid: 'topics-count' });
  const list = h('div', { class: 'scroll', testid: 'topics-list' }, h('p', { class: 'muted' }, 'Loading…'));
  let data = null;

  function draw() {
    if (!data) return;
    const q = filter.value.trim().toLowerCase();
    const rows = data.topics
      .filter((t) => (internal.checked || !t.internal) && (!q || t.name.toLowerCase().includes(q)))
      .sort((a, z) => a.name.localeCompare(z.name));
    fill(count, `${rows.length} of ${data.topics.length}`);
    fill(list, table('topics-table', ['Name', '#Partitions', '#Records', '#Size'], rows.slice(0, 1000).map((t) =>
      h('tr', { testid: 'topic-row', 'data-name': t.name },
        h('td', null, h('a', { href: `#/topics/${enc(t.name)}`, testid: 'topic-link' }, t.name), t.internal ? badge('internal') : null),
        h('td', { class: 'num' }, fmtNum(t.partitions)),
        h('td', { class: 'num', testid: 'topic-records' }, fmtNum(t.records)),
        h('td', { class: 'num' }, fmtBytes(t.bytes)))), q ? 'no topic matches' : 'no topics yet'));
    mark('kairos:topics-rendered');
    mark('kairos:first-data');
  }

  async function refresh() {
    try {
      const d = await api('GET', '/api/v1/topics');
      clearMsg(err);
      const changed = JSON.stringify(d) !== JSON.stringify(data);
      data = d;
      if (changed || !app.marked.has('kairos:topics-rendered')) draw();
    } catch (e) {
      sayError(err, e);
      if (!data) unavailable(list);
    }
  }

  const el = h('div', { class: 'page', testid: 'page-topics' },
    card('Create a topic', 'card-create-topic', form, createMsg),
    card(null, 'card-topics', h('div', { class: 'card-head' }, h('h2', null, 'Topics ', count), h('span', { class: 'spacer' }),
      filter, h('label', { class: 'check' }, internal, ' internal')), err, list));
  return { el, refresh, title: 'Topics' };
}

function topicPage(topic) {
  const base = `/api/v1/topics/${enc(topic)}`;
  const err = msg('topic-error');
  const head = h('div', { testid: 'topic-head' });
  const partsEl = h('div', { class: 'scroll', testid: 'partitions' }, h('p', { class: 'muted' }, 'Loading…'));
  let detail = null;

  // -- grow partitions
  const growN = h('input', { type: 'number', min: 1, testid: 'grow-count', placeholder: 'new total' });
  const growBtn = h('button', { type: 'submit', testid: 'grow-submit' }, 'Add partitions');
  const growMsg = msg('grow-msg');
  const growForm = h('form', { class: 'inline-form', testid: 'grow-form' }, field('Partition count', growN), growBtn, growMsg);
  growForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(growBtn, async () => {
      try {
        const count = intOf(growN.value, 'the partition count', 1);
        await api('POST', `${base}/partitions`, { count });
        say(growMsg, 'ok', `${topic} now has ${count} partitions.`);
        await refresh();
      } catch (e) { sayError(growMsg, e); }
    });
  });

  // -- configs
  const cfgEl = h('div', { testid: 'configs' }, h('p', { class: 'muted' }, 'Loading…'));
  const cfgMsg = msg('configs-msg');
  const cfgSave = h('button', { type: 'submit', testid: 'configs-save' }, 'Save changes');
  const cfgForm = h('form', { testid: 'configs-form', autocomplete: 'off' },
    h('p', { class: 'muted' }, 'Edit values and save; "Default" removes this topic\'s override.'), cfgEl,
    h('div', { class: 'inline-form' }, cfgSave), cfgMsg);
  let cfgShown = null; // the configs the inputs were drawn from: name -> value (string or null)
  let cfgRaw = null;
  function drawConfigs(raw) {
    cfgRaw = JSON.stringify(raw || {});
    // {"name": {"value", "source"}} (or a plain {"name": "value"} map)
    const configs = {};
    const sources = {};
    for (const [k, v] of Object.entries(raw || {})) {
      const obj = v !== null && typeof v === 'object';
      configs[k] = obj ? v.value : v;
      sources[k] = obj ? v.source : null;
    }
    cfgShown = configs;
    const over = (k) => (sources[k] === 'DYNAMIC_TOPIC_CONFIG' ? 0 : 1);
    const keys = Object.keys(configs).sort((a, z) => over(a) - over(z) || a.localeCompare(z));
    fill(cfgEl, table('configs-table', ['Config', 'Value', 'Source', ''], keys.map((k) => {
      const shown = configs[k] == null ? '' : String(configs[k]);
      const input = h('input', { value: shown, 'data-key': k, testid: 'config-value', class: 'mono' });
      input.addEventListener('input', () => input.classList.toggle('dirty', input.value !== shown));
      const overridden = sources[k] === 'DYNAMIC_TOPIC_CONFIG';
      const reset = h('button', { type: 'button', class: 'ghost small', testid: 'config-reset', 'data-key': k, disabled: sources[k] != null && !overridden, title: 'Remove this topic\'s override' }, 'Default');
      reset.addEventListener('click', () => saveConfigs({ [k]: null }, reset));
      return h('tr', { testid: 'config-row', 'data-key': k, 'data-source': sources[k] || '', class: overridden ? 'override' : null },
        h('td', { class: 'mono' }, k), h('td', null, input),
        h('td', { class: 'muted small' }, sourceName(sources[k])), h('td', null, reset));
    }), 'no configs'));
  }
  async function saveConfigs(changes, button) {
    await busy(button, async () => {
      try {
        if (!Object.keys(changes).length) throw new Error('nothing changed');
        const d = await api('PUT', `${base}/configs`, { configs: changes });
        say(cfgMsg, 'ok', `Saved: ${Object.entries(changes).map(([k, v]) => `${k}=${v == null ? '(default)' : v}`).join(', ')}`);
        if (d && d.configs) drawConfigs(d.configs);
        await refresh();
      } catch (e) { sayError(cfgMsg, e); }
    });
  }
  cfgForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const changes = {};
    for (const input of cfgEl.querySelectorAll('input[data-key]')) {
      const k = input.dataset.key;
      if (input.value !== String(cfgShown[k] ?? '')) changes[k] = input.value;
    }
    saveConfigs(changes, cfgSave);
  });

  // -- delete
  const delMsg = msg('delete-topic-msg');
  const delConfirm = h('button', { type: 'button', class: 'danger', testid: 'delete-topic-confirm', hidden: true }, `Delete ${topic} and its records`);
  const delBtn = h('button', { type: 'button', class: 'ghost', testid: 'delete-topic' }, 'Delete topic…');
  delBtn.addEventListener('click', () => { delConfirm.hidden = !delConfirm.hidden; });
  delConfirm.addEventListener('click', () => busy(delConfirm, async () => {
    try {
      await api('DELETE', base);
      location.hash = '#/topics';
    } catch (e) { sayError(delMsg, e); }
  }));

  // -- record browser
  const rb = recordBrowser(topic);

  async function refresh() {
    try {
      const d = await api('GET', base);
      clearMsg(err);
      detail = d;
      renderIf(head, { name: d.name, id: d.id, internal: d.internal, view: d.view, views: d.views, records: d.records, bytes: d.bytes, n: d.partitions.length }, () => [
        h('h1', { testid: 'topic-name' }, d.name, d.internal ? badge('internal') : null, d.view ? badge('view', 'accent') : null),
        kv([
          ['Topic id', h('span', { class: 'mono' }, d.id)],
          ['Partitions', fmtNum(d.partitions.length), 'topic-partitions'],
          ['Records', fmtNum(d.records), 'topic-records-total'],
          ['Size', fmtBytes(d.bytes)],
          d.view && d.view.source ? ['View of', [h('a', { href: `#/topics/${enc(d.view.source)}` }, d.view.source), ' · ', h('a', { href: `#/views/${enc(d.name)}` }, 'edit the script')]] : null,
          d.views && d.views.length ? ['Views reading it', d.views.map((v, i) => [i ? ', ' : '', h('a', { href: `#/views/${enc(v)}` }, v)])] : null,
        ].filter(Boolean)),
      ]);
      renderIf(partsEl, d.partitions, (ps) => table('partitions-table',
        ['#Partition', '#Log start', '#High watermark', '#Last stable', '#Records', '#Size', '#Segments'],
        ps.map((p) => h('tr', { testid: 'partition-row', 'data-partition': p.partition },
          h('td', { class: 'num' }, p.partition),
          h('td', { class: 'num', testid: 'log-start' }, fmtNum(p.log_start_offset)),
          h('td', { class: 'num', testid: 'high-watermark' }, fmtNum(p.high_watermark)),
          h('td', { class: 'num' }, fmtNum(p.last_stable_offset)),
          h('td', { class: 'num' }, fmtNum(p.high_watermark - p.log_start_offset)),
          h('td', { class: 'num' }, fmtBytes(p.size_bytes)),
          h('td', { class: 'num' }, p.segments == null ? '—' : fmtNum(p.segments))))));
      if (!growN.value) growN.placeholder = `> ${d.partitions.length}`;
      const editing = cfgEl.querySelector('input.dirty') || cfgEl.contains(document.activeElement);
      if (cfgShown === null || (!editing && cfgRaw !== JSON.stringify(d.configs || {}))) {
        drawConfigs(d.configs || {});
      }
      rb.setPartitions(d.partitions);
      mark('kairos:first-data');
    } catch (e) {
      sayError(err, e);
      if (cfgShown === null) fill(cfgEl, h('p', { class: 'muted' }, 'unavailable'));
    }
  }

  const el = h('div', { class: 'page', testid: 'page-topic', 'data-topic': topic },
    h('nav', { class: 'crumbs' }, h('a', { href: '#/topics' }, 'Topics'), ' / ', h('span', null, topic)),
    err,
    card(null, 'card-topic', head, h('div', { class: 'actions' }, delBtn, delConfirm), delMsg),
    card('Partitions', 'card-partitions', partsEl, growForm),
    card('Records', 'card-records', rb.el),
    card('Configs', 'card-configs', cfgForm));
  return { el, refresh, title: topic };
}

/** Browse a topic's records from an offset or from a time. */
function recordBrowser(topic) {
  const part = h('select', { testid: 'browse-partition' }, h('option', { value: '0' }, '0'));
  const mode = h('select', { testid: 'browse-mode' }, h('option', { value: 'offset' }, 'from offset'), h('option', { value: 'timestamp' }, 'from time'));
  const offset = h('input', { type: 'number', min: 0, value: '0', testid: 'browse-offset' });
  const time = h('input', { placeholder: 'epoch ms or 2024-05-01 12:00:00', testid: 'browse-timestamp', hidden: true });
  const limit = h('select', { testid: 'browse-limit' }, [20, 50, 100, 500].map((n) => h('option', { value: n }, n)));
  const go = h('button', { type: 'submit', testid: 'browse-submit' }, 'Show records');
  const latest = h('button', { type: 'button', class: 'ghost', testid: 'browse-latest' }, 'Latest');
  const next = h('button', { type: 'button', class: 'ghost', testid: 'browse-next', disabled: true }, 'Next →');
  const out = msg('browse-msg');
  const result = h('div', { class: 'scroll', testid: 'records' });
  const offsetField = field('Offset', offset);
  const timeField = field('Time', time);
  timeField.hidden = true;
  mode.addEventListener('change', () => {
    offsetField.hidden = mode.value !== 'offset';
    timeField.hidden = time.hidden = mode.value !== 'timestamp';
  });
  let partitions = [];
  let nextOffset = null;

  async function browse(params) {
    await busy(go, async () => {
      try {
        const q = new URLSearchParams({ partition: part.value, limit: limit.value, ...params });
        const r = await api('GET', `/api/v1/topics/${enc(topic)}/records?${q}`);
        nextOffset = r.next_offset;
        next.disabled = r.next_offset == null || r.next_offset >= r.high_watermark;
        const from = r.records.length ? r.records[0].offset : null;
        say(out, 'info', r.records.length
          ? `partition ${r.partition}: ${r.records.length} records, offsets ${fmtNum(from)}–${fmtNum(r.records[r.records.length - 1].offset)} (high watermark ${fmtNum(r.high_watermark)})`
          : `partition ${r.partition}: no records there (high watermark ${fmtNum(r.high_watermark)})`);
        fill(result, table('records-table', ['#Offset', 'Timestamp', 'Key', 'Value', 'Headers'], r.records.map((rec) =>
          h('tr', { testid: 'record-row', 'data-offset': rec.offset },
            h('td', { class: 'num', testid: 'record-offset' }, rec.offset),
            h('td', { class: 'nowrap', testid: 'record-timestamp', title: String(rec.timestamp) }, fmtTime(rec.timestamp)),
            h('td', { testid: 'record-key' }, longText(rec.key, 60), rec.key_encoding === 'base64' ? badge('base64') : null),
            h('td', { testid: 'record-value' }, longText(rec.value), rec.value_encoding === 'base64' ? badge('base64') : null),
            h('td', { class: 'headers' }, (rec.headers || []).map((hd) =>
              h('div', null, h('span', { class: 'mono hkey' }, hd.key), '=', longText(hd.value, 60)))))), 'no records'));
      } catch (e) {
        sayError(out, e);
        fill(result);
      }
    });
  }

  const form = h('form', { class: 'inline-form', testid: 'browse-form', autocomplete: 'off' },
    field('Partition', part), field('Mode', mode), offsetField, timeField, field('Limit', limit), go, latest, next);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      if (mode.value === 'offset') browse({ offset: String(intOf(offset.value, 'the offset')) });
      else browse({ timestamp: String(parseTime(time.value)) });
    } catch (e) { sayError(out, e); }
  });
  latest.addEventListener('click', () => {
    const p = partitions.find((x) => String(x.partition) === part.value);
    const from = p ? Math.max(p.log_start_offset, p.high_watermark - Number(limit.value)) : 0;
    mode.value = 'offset';
    mode.dispatchEvent(new Event('change'));
    offset.value = String(from);
    browse({ offset: String(from) });
  });
  next.addEventListener('click', () => {
    if (nextOffset == null) return;
    mode.value = 'offset';
    mode.dispatchEvent(new Event('change'));
    offset.value = String(nextOffset);
    browse({ offset: String(nextOffset) });
  });

  return {
    el: h('div', { testid: 'record-browser' }, form, out, result),
    setPartitions(ps) {
      partitions = ps;
      if (part.options.length === ps.length) return;
      const keep = part.value;
      fill(part, ps.map((p) => h('option', { value: p.partition }, p.partition)));
      if (ps.some((p) => String(p.partition) === keep)) part.value = keep;
    },
  };
}

// ------------------------------------------------------------------------ Groups
function groupsPage() {
  const err = msg('groups-error');
  const list = h('div', { class: 'scroll', testid: 'groups-list' }, h('p', { class: 'muted' }, 'Loading…'));
  async function refresh() {
    let gs;
    try {
      gs = (await api('GET', '/api/v1/groups')).groups;
      clearMsg(err);
    } catch (e) { sayError(err, e); unavailable(list); return; }
    gs.sort((a, z) => a.group.localeCompare(z.group));
    const lagErrors = [];
    const details = await Promise.all(gs.slice(0, MAX_LAG_GROUPS).map((g) =>
      api('GET', `/api/v1/groups/${enc(g.group)}`).then((d) => { recordLag(g.group, d.lag); return d; },
        (e) => { lagErrors.push(`${g.group}: ${errorText(e)}`); return null; })));
    if (lagErrors.length) say(err, 'error', `Lag unavailable for ${lagErrors.length} group(s): ${lagErrors.slice(0, 3).join('; ')}`);
    if (gs.length > MAX_LAG_GROUPS) say(err, 'info', `Lag is shown for the first ${MAX_LAG_GROUPS} of ${gs.length} groups; open a group for its own.`);
    list._drawn = true;
    fill(list, table('groups-table', ['Group', 'Type', 'State', 'Protocol', '#Members', '#Lag', 'Lag, last 5 min'], gs.map((g, i) => {
      const d = details[i];
      return h('tr', { testid: 'group-row', 'data-group': g.group },
        h('td', null, h('a', { href: `#/groups/${enc(g.group)}`, testid: 'group-link' }, g.group)),
        h('td', null, g.type),
        h('td', null, stateBadge(g.state)),
        h('td', null, g.protocol_type || '—'),
        h('td', { class: 'num' }, fmtNum(g.members)),
        h('td', { class: 'num', testid: 'group-lag' }, d ? fmtNum(d.lag) : '—'),
        h('td', null, sparkline(hist.lag[g.group] || [], 'group-spark')));
    }), 'no consumer groups yet'));
    mark('kairos:first-data');
  }
  const el = h('div', { class: 'page', testid: 'page-groups' }, card('Consumer groups', 'card-groups', err, list));
  return { el, refresh, title: 'Groups' };
}

function stateBadge(state) {
  const s = String(state || '');
  const kind = /stable/i.test(s) ? 'ok' : /empty/i.test(s) ? '' : /dead/i.test(s) ? 'bad' : 'warn';
  return badge(s || '—', kind);
}

function groupPage(group) {
  const base = `/api/v1/groups/${enc(group)}`;
  const err = msg('group-error');
  const head = h('div', { testid: 'group-head' }, h('h1', null, group));
  const chart = h('div', { testid: 'lag-chart-wrap' });
  const members = h('div', { class: 'scroll', testid: 'members' });
  const offsets = h('div', { class: 'scroll', testid: 'offsets' });

  // -- reset offsets
  const rTopic = h('input', { testid: 'reset-topic', list: 'reset-topics', required: true, placeholder: 'topic' });
  const topicsList = h('datalist', { id: 'reset-topics' });
  const rTo = h('select', { testid: 'reset-to' },
    h('option', { value: 'earliest' }, 'earliest'), h('option', { value: 'latest' }, 'latest'),
    h('option', { value: 'timestamp' }, 'time'), h('option', { value: 'offset' }, 'offset'));
  const rVal = h('input', { testid: 'reset-value', placeholder: 'offset, or epoch ms / date', disabled: true });
  const rParts = h('input', { testid: 'reset-partitions', placeholder: 'all (or 0,1,2)' });
  const rBtn = h('button', { type: 'submit', testid: 'reset-submit' }, 'Reset offsets');
  const rMsg = msg('reset-msg');
  rTo.addEventListener('change', () => { rVal.disabled = rTo.value === 'earliest' || rTo.value === 'latest'; });
  const rForm = h('form', { class: 'inline-form', testid: 'reset-form', autocomplete: 'off' },
    field('Topic', rTopic), topicsList, field('To', rTo), field('Value', rVal), field('Partitions', rParts), rBtn);
  rForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(rBtn, async () => {
      try {
        let to = rTo.value;
        if (to === 'timestamp') to = { timestamp: parseTime(rVal.value) };
        else if (to === 'offset') to = { offset: intOf(rVal.value, 'the offset') };
        const body = { topic: rTopic.value.trim(), to };
        if (!body.topic) throw new Error('name the topic whose offsets to reset');
        if (rParts.value.trim()) body.partitions = rParts.value.split(',').map((p) => intOf(p, 'a partition'));
        const r = await api('POST', `${base}/reset`, body);
        say(rMsg, 'ok', `Reset ${r.group} on ${r.topic}: `,
          (r.offsets || []).map((o) => `partition ${o.partition} → ${fmtNum(o.offset)}`).join(', ') || 'no partitions');
        await refresh();
      } catch (e) { sayError(rMsg, e); }
    });
  });

  const delMsg = msg('group-delete-msg');
  const delConfirm = h('button', { type: 'button', class: 'danger', testid: 'group-delete-confirm', hidden: true }, `Delete ${group} and its committed offsets`);
  const delBtn = h('button', { type: 'button', class: 'ghost', testid: 'group-delete' }, 'Delete group…');
  delBtn.addEventListener('click', () => { delConfirm.hidden = !delConfirm.hidden; });
  delConfirm.addEventListener('click', () => busy(delConfirm, async () => {
    try {
      await api('DELETE', base);
      location.hash = '#/groups';
    } catch (e) { sayError(delMsg, e); }
  }));

  async function refresh() {
    let d;
    try {
      d = await api('GET', base);
      clearMsg(err);
    } catch (e) {
      sayError(err, e);
      return;
    }
    recordLag(group, d.lag);
    renderIf(head, [d.state, d.type, d.lag, d.group_epoch, d.assignor, d.protocol], () => [
      h('h1', null, d.group, ' ', stateBadge(d.state)),
      kv([
        ['Type', d.type],
        ['State', d.state, 'group-state'],
        ['Total lag', fmtNum(d.lag), 'group-total-lag'],
        d.group_epoch != null ? ['Group epoch', d.group_epoch] : null,
        d.assignor ? ['Assignor', d.assignor] : null,
        d.protocol ? ['Protocol', d.protocol] : null,
      ].filter(Boolean)),
    ]);
    fill(chart, lineChart({ testid: 'lag-chart', title: 'Total lag (records)', wide: true, series: [{ key: 'lag', name: 'lag', points: hist.lag[group] || [] }] }));
    renderIf(members, d.members, (ms) => table('members-table', ['Member', 'Instance', 'Client', 'Host', 'Assignment'], ms.map((m) =>
      h('tr', { testid: 'member-row' },
        h('td', { class: 'mono' }, m.member_id),
        h('td', null, m.group_instance_id || '—'),
        h('td', null, m.client_id),
        h('td', null, m.client_host),
        h('td', null, (m.assignment || []).map((a) => `${a.topic}: ${a.partitions.join(',')}`).join('; ') || '—'))), 'no members (the group is empty: offsets can be reset)'));
    renderIf(offsets, d.offsets, (os) => table('offsets-table', ['Topic', '#Partition', '#Committed', '#High watermark', '#Lag'],
      os.map((o) => h('tr', { testid: 'offset-row', 'data-topic': o.topic, 'data-partition': o.partition },
        h('td', null, h('a', { href: `#/topics/${enc(o.topic)}` }, o.topic)),
        h('td', { class: 'num' }, o.partition),
        h('td', { class: 'num', testid: 'committed' }, fmtNum(o.committed)),
        h('td', { class: 'num' }, fmtNum(o.high_watermark)),
        h('td', { class: 'num', testid: 'lag' }, fmtNum(o.lag)))), 'no committed offsets'));
    const topics = [...new Set(d.offsets.map((o) => o.topic))];
    renderIf(topicsList, topics, (ts) => ts.map((t) => h('option', { value: t })));
    if (!rTopic.value && topics.length === 1) rTopic.value = topics[0];
    mark('kairos:first-data');
  }

  const el = h('div', { class: 'page', testid: 'page-group', 'data-group': group },
    h('nav', { class: 'crumbs' }, h('a', { href: '#/groups' }, 'Groups'), ' / ', h('span', null, group)),
    err,
    card(null, 'card-group', head, h('div', { class: 'actions' }, delBtn, delConfirm), delMsg),
    card('Lag over time', 'card-lag', chart),
    card('Committed offsets and lag', 'card-offsets', offsets),
    card('Members', 'card-members', members),
    card('Reset offsets', 'card-reset', h('p', { class: 'muted' }, 'Only while the group has no members (stop its consumers first).'), rForm, rMsg));
  return { el, refresh, title: group };
}

// ------------------------------------------------------------------------ Delays
function delaysPage(target) {
  const err = msg('delays-error');
  const list = h('div', { class: 'scroll', testid: 'delays-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const pendErr = msg('pending-error');
  const pendMsg = msg('cancel-msg');
  const pend = h('div', { class: 'scroll', testid: 'pending' });

  async function cancel(rec, button) {
    await busy(button, async () => {
      try {
        await api('DELETE', `/api/v1/delays/${enc(target)}/${rec.partition}/${rec.offset}`);
        say(pendMsg, 'ok', `Cancelled ${rec.partition}:${rec.offset} (due ${fmtTime(rec.due_ms)}).`);
        await refresh();
      } catch (e) { sayError(pendMsg, e); }
    });
  }

  async function refresh() {
    const jobs = [api('GET', '/api/v1/delays').then((r) => {
      clearMsg(err);
      const ts = [...r.targets].sort((a, z) => a.target.localeCompare(z.target));
      renderIf(list, ts, () => table('delays-table', ['Target', '#Pending', 'Next due', '#Delivered', '#Cancelled'], ts.map((t) =>
        h('tr', { testid: 'delay-target-row', 'data-target': t.target, class: t.target === target ? 'selected' : null },
          h('td', null, h('a', { href: `#/delays/${enc(t.target)}`, testid: 'delay-target-link' }, t.target)),
          h('td', { class: 'num', testid: 'delay-pending' }, fmtNum(t.pending)),
          h('td', null, t.next_due_ms == null ? '—' : fmtDue(t.next_due_ms)),
          h('td', { class: 'num' }, fmtNum(t.fired)),
          h('td', { class: 'num' }, fmtNum(t.cancelled)))), 'no delayed records (produce to <topic>.delay with a kairos-delay-ms header)'));
    }, (e) => { sayError(err, e); unavailable(list); })];
    if (target) {
      jobs.push(api('GET', `/api/v1/delays/${enc(target)}?limit=200`).then((r) => {
        clearMsg(pendErr);
        renderIf(pend, r, () => [
          h('p', null, h('b', { testid: 'pending-count' }, fmtNum(r.pending)), ` pending for ${r.target}`, r.records.length < r.pending ? ` (first ${r.records.length} shown)` : ''),
          table('pending-table', ['Id', 'Due', 'Key', 'Value', 'Repeats', ''], r.records.map((rec) => {
            const b = h('button', { type: 'button', class: 'danger small', testid: 'delay-cancel' }, 'Cancel');
            b.addEventListener('click', () => cancel(rec, b));
            return h('tr', { testid: 'delay-row', 'data-id': rec.id || `${rec.partition}:${rec.offset}` },
              h('td', { class: 'mono' }, rec.id || `${rec.partition}:${rec.offset}`),
              h('td', { class: 'nowrap' }, fmtDue(rec.due_ms)),
              h('td', null, longText(rec.key, 40)),
              h('td', null, longText(rec.value, 80)),
              h('td', null, rec.repeat_ms ? `every ${fmtDuration(rec.repeat_ms)}${rec.remaining != null ? `, ${rec.remaining} left` : ''}` : '—'),
              h('td', null, b));
          }), 'nothing pending'),
        ]);
      }, (e) => { sayError(pendErr, e); fill(pend); }));
    }
    await Promise.all(jobs);
    mark('kairos:first-data');
  }

  const el = h('div', { class: 'page', testid: 'page-delays' },
    card('Delayed records by target', 'card-delays', err, list),
    target ? card(`Pending for ${target}`, 'card-pending', pendErr, pendMsg, pend) : null);
  return { el, refresh, title: target ? `Delays: ${target}` : 'Delays' };
}

// ------------------------------------------------------------------------ Views
const OUTCOME = { keep: 'kept', drop: 'dropped', replace: 'transformed', error: 'error' };

function viewsPage(editing) {
  const err = msg('views-error');
  const list = h('div', { class: 'scroll', testid: 'views-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const topicNames = h('datalist', { id: 'view-sources' });

  const name = h('input', { testid: 'view-name', placeholder: 'orders-beijing', required: true, readOnly: Boolean(editing), value: editing || '' });
  const source = h('input', { testid: 'view-source', placeholder: 'orders', list: 'view-sources', required: true });
  const onError = h('select', { testid: 'view-on-error' }, h('option', { value: 'drop' }, 'drop the record'), h('option', { value: 'pass' }, 'pass it unchanged'));
  const script = h('textarea', { testid: 'view-script', rows: 8, spellcheck: 'false', class: 'code', placeholder: 'json.city == "beijing" && json.price > 10' });
  const scriptErr = h('div', { class: 'script-error', testid: 'script-error', hidden: true });
  const saveMsg = msg('view-save-msg');
  const save = h('button', { type: 'submit', testid: 'view-save' }, editing ? 'Save changes' : 'Create view');
  const del = h('button', { type: 'button', class: 'ghost', testid: 'view-delete', hidden: !editing }, 'Delete view');
  const dPart = h('input', { type: 'number', min: 0, value: '0', testid: 'dryrun-partition' });
  const dOff = h('input', { type: 'number', min: 0, value: '0', testid: 'dryrun-offset' });
  const dLimit = h('input', { type: 'number', min: 1, max: 1000, value: '20', testid: 'dryrun-limit' });
  const dBtn = h('button', { type: 'button', testid: 'dryrun-submit' }, 'Dry run');
  const dMsg = msg('dryrun-msg');
  const dOut = h('div', { class: 'scroll', testid: 'dryrun-results' });

  function showScriptError(e) {
    const body = e instanceof ApiError ? e.body : null;
    if (!body || body.line == null) { scriptErr.hidden = true; return false; }
    const lines = script.value.split('\n');
    const line = lines[body.line - 1];
    const col = Math.max(1, body.column || 1);
    fill(scriptErr,
      h('div', null, h('b', { testid: 'script-error-pos' }, `line ${body.line}, column ${body.column ?? '?'}`), ': ', h('span', { testid: 'script-error-text' }, body.error)),
      line != null ? h('pre', null, `${pad(body.line, 3)} | ${line}\n      ${' '.repeat(col - 1)}^`) : null);
    scriptErr.hidden = false;
    let pos = 0;
    for (let i = 0; i < body.line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos = Math.min(script.value.length, pos + col - 1);
    script.setSelectionRange(pos, pos);
    return true;
  }

  dBtn.addEventListener('click', () => busy(dBtn, async () => {
    clearMsg(dMsg);
    scriptErr.hidden = true;
    try {
      const topic = source.value.trim();
      if (!topic) throw new Error('choose the source topic whose records to run the script on');
      const q = { script: script.value, topic, partition: intOf(dPart.value, 'the partition'), offset: intOf(dOff.value, 'the offset'), limit: intOf(dLimit.value, 'the limit', 1) };
      let inputErr = null;
      const recsP = api('GET', `/api/v1/topics/${enc(topic)}/records?${new URLSearchParams({ partition: q.partition, offset: q.offset, limit: q.limit })}`)
        .catch((e) => { inputErr = e; return null; });
      const r = await api('POST', '/api/v1/views/test', q);
      const inputs = new Map(((await recsP) || { records: [] }).records.map((x) => [x.offset, x]));
      const n = { keep: 0, drop: 0, replace: 0, error: 0 };
      for (const x of r.results) n[x.outcome] = (n[x.outcome] || 0) + 1;
      say(dMsg, 'info', h('span', { testid: 'dryrun-summary', 'data-kept': n.keep, 'data-dropped': n.drop, 'data-transformed': n.replace, 'data-errors': n.error },
        `${r.results.length} records from ${topic}[${q.partition}] offset ${q.offset}: ${n.keep} kept, ${n.drop} dropped, ${n.replace} transformed, ${n.error} failed`,
        n.error ? ` (on_error=${onError.value}: ${onError.value === 'pass' ? 'passed unchanged' : 'dropped'})` : '',
        inputErr ? `; input values unavailable (${errorText(inputErr)})` : ''));
      fill(dOut, table('dryrun-table', ['#Offset', 'Outcome', 'Input value', 'Output'], r.results.map((x) => {
        const input = inputs.get(x.offset);
        const output = x.outcome === 'replace' ? longText(x.value) : x.outcome === 'keep' ? h('span', { class: 'muted' }, 'unchanged')
          : x.outcome === 'error' ? h('span', { class: 'bad' }, x.error) : h('span', { class: 'muted' }, '—');
        return h('tr', { testid: 'dryrun-row', 'data-offset': x.offset, 'data-outcome': OUTCOME[x.outcome] || x.outcome, class: `outcome-${x.outcome}` },
          h('td', { class: 'num' }, x.offset),
          h('td', null, badge(OUTCOME[x.outcome] || x.outcome, { keep: 'ok', drop: '', replace: 'accent', error: 'bad' }[x.outcome] || '')),
          h('td', null, input ? longText(input.value, 100) : x.outcome === 'keep' ? longText(x.value, 100) : h('span', { class: 'muted' }, '—')),
          h('td', null, output));
      }), 'no records there'));
    } catch (e) {
      fill(dOut);
      if (!showScriptError(e)) sayError(dMsg, e);
      else say(dMsg, 'error', 'The script does not compile (see above).');
    }
  }));

  const form = h('form', { class: 'editor', testid: 'view-form', autocomplete: 'off' },
    h('div', { class: 'inline-form' }, field('Name', name), field('Source topic', source), topicNames, field('When the script fails', onError)),
    field('Script (rhai): true keeps, false or () drops, a string or map replaces the value', script),
    scriptErr,
    h('div', { class: 'inline-form' }, field('Dry run on partition', dPart), field('from offset', dOff), field('records', dLimit), dBtn, h('span', { class: 'spacer' }), save, del),
    saveMsg, dMsg, dOut);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      clearMsg(saveMsg);
      scriptErr.hidden = true;
      const body = { name: name.value.trim(), source: source.value.trim(), script: script.value, on_error: onError.value };
      try {
        if (editing) await api('PUT', `/api/v1/views/${enc(editing)}`, body);
        else await api('POST', '/api/v1/views', body);
        if (!editing) {
          app.flash = `Created view ${body.name}: consumers reading ${body.name} get the records this script keeps.`;
          location.hash = `#/views/${enc(body.name)}`;
          return;
        }
        say(saveMsg, 'ok', `Saved view ${body.name}: consumers reading ${body.name} now get the records this script keeps.`);
        await refresh();
      } catch (e) {
        showScriptError(e);
        sayError(saveMsg, e);
      }
    });
  });
  del.addEventListener('click', () => busy(del, async () => {
    try {
      await api('DELETE', `/api/v1/views/${enc(editing)}`);
      location.hash = '#/views';
    } catch (e) { sayError(saveMsg, e); }
  }));

  let loaded = !editing;
  if (app.flash) { say(saveMsg, 'ok', app.flash); app.flash = null; }
  async function refresh() {
    const jobs = [
      api('GET', '/api/v1/views').then((r) => {
        clearMsg(err);
        const vs = [...r.views].sort((a, z) => a.name.localeCompare(z.name));
        renderIf(list, vs, () => table('views-table', ['View', 'Source', 'On error', 'Script'], vs.map((v) =>
          h('tr', { testid: 'view-row', 'data-name': v.name, class: v.name === editing ? 'selected' : null },
            h('td', null, h('a', { href: `#/views/${enc(v.name)}`, testid: 'view-link' }, v.name)),
            h('td', null, h('a', { href: `#/topics/${enc(v.source)}` }, v.source)),
            h('td', null, v.on_error),
            h('td', { class: 'mono' }, longText(v.script.split('\n')[0] + (v.script.includes('\n') ? ' …' : ''), 80)))), 'no views yet'));
        if (editing && !loaded) {
          const v = r.views.find((x) => x.name === editing);
          if (!v) { say(saveMsg, 'error', `There is no view ${editing}.`); loaded = true; return; }
          source.value = v.source;
          script.value = v.script;
          onError.value = v.on_error || 'drop';
          loaded = true;
        }
      }, (e) => { sayError(err, e); unavailable(list); }),
      api('GET', '/api/v1/topics').then((r) => {
        renderIf(topicNames, r.topics.map((t) => t.name), (ns) => ns.map((n) => h('option', { value: n })));
      }, () => null),
    ];
    await Promise.all(jobs);
    mark('kairos:first-data');
  }

  const el = h('div', { class: 'page', testid: 'page-views' },
    card(editing ? `View ${editing}` : 'New view', 'card-view-editor', form),
    card(null, 'card-views', h('div', { class: 'card-head' }, h('h2', null, 'Views'), h('span', { class: 'spacer' }),
      editing ? h('a', { href: '#/views', class: 'button ghost', testid: 'view-new' }, 'New view') : null), err, list));
  return { el, refresh, title: editing ? `View ${editing}` : 'Views' };
}

// ------------------------------------------------------------------------ Quotas
function quotasPage() {
  const err = msg('quotas-error');
  const list = h('div', { class: 'scroll', testid: 'quotas-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const client = h('input', { testid: 'quota-client', placeholder: 'client id' });
  const dflt = h('input', { type: 'checkbox', testid: 'quota-default' });
  const prod = h('input', { type: 'number', min: 1, testid: 'quota-producer', placeholder: 'no limit' });
  const cons = h('input', { type: 'number', min: 1, testid: 'quota-consumer', placeholder: 'no limit' });
  const save = h('button', { type: 'submit', testid: 'quota-save' }, 'Set quota');
  const qMsg = msg('quota-msg');
  dflt.addEventListener('change', () => { client.disabled = dflt.checked; });
  const form = h('form', { class: 'inline-form', testid: 'quota-form', autocomplete: 'off' },
    field('Client id', client), h('label', { class: 'check' }, dflt, ' default (every client without its own quota)'),
    field('Produce bytes/s', prod), field('Fetch bytes/s', cons), save);
  const rate = (input, what) => (input.value.trim() === '' ? null : intOf(input.value, what, 1));
  async function put(body, button) {
    await busy(button, async () => {
      try {
        await api('PUT', '/api/v1/quotas', body);
        say(qMsg, 'ok', `Quota for ${body.client_id == null ? 'the default' : body.client_id}: produce ${body.producer_byte_rate == null ? 'unlimited' : fmtRate('B')(body.producer_byte_rate)}, fetch ${body.consumer_byte_rate == null ? 'unlimited' : fmtRate('B')(body.consumer_byte_rate)}.`);
        await refresh();
      } catch (e) { sayError(qMsg, e); }
    });
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      if (!dflt.checked && !client.value.trim()) throw new Error('name the client id, or tick "default"');
      put({ client_id: dflt.checked ? null : client.value.trim(), producer_byte_rate: rate(prod, 'the produce rate'), consumer_byte_rate: rate(cons, 'the fetch rate') }, save);
    } catch (e) { sayError(qMsg, e); }
  });

  async function refresh() {
    try {
      const r = await api('GET', '/api/v1/quotas');
      clearMsg(err);
      const qs = [...r.quotas].sort((a, z) => String(a.client_id ?? '').localeCompare(String(z.client_id ?? '')));
      renderIf(list, qs, () => table('quotas-table', ['Client id', '#Produce', '#Fetch', ''], qs.map((q) => {
        const edit = h('button', { type: 'button', class: 'ghost small', testid: 'quota-edit' }, 'Edit');
        edit.addEventListener('click', () => {
          dflt.checked = q.client_id == null;
          client.disabled = dflt.checked;
          client.value = q.client_id ?? '';
          prod.value = q.producer_byte_rate ?? '';
          cons.value = q.consumer_byte_rate ?? '';
          client.focus();
        });
        const remove = h('button', { type: 'button', class: 'ghost small', testid: 'quota-remove' }, 'Remove');
        remove.addEventListener('click', () => put({ client_id: q.client_id ?? null, producer_byte_rate: null, consumer_byte_rate: null }, remove));
        return h('tr', { testid: 'quota-row', 'data-client': q.client_id ?? '' },
          h('td', null, q.client_id == null ? h('i', null, '(default)') : q.client_id),
          h('td', { class: 'num', testid: 'quota-producer-rate', 'data-value': q.producer_byte_rate ?? '' }, q.producer_byte_rate == null ? 'unlimited' : fmtRate('B')(q.producer_byte_rate)),
          h('td', { class: 'num', testid: 'quota-consumer-rate', 'data-value': q.consumer_byte_rate ?? '' }, q.consumer_byte_rate == null ? 'unlimited' : fmtRate('B')(q.consumer_byte_rate)),
          h('td', null, edit, ' ', remove));
      }), 'no quotas: every client is unlimited'));
      mark('kairos:first-data');
    } catch (e) {
      sayError(err, e);
      unavailable(list);
    }
  }
  const el = h('div', { class: 'page', testid: 'page-quotas' },
    card('Client quotas', 'card-quotas', err, list),
    card('Set a quota', 'card-set-quota', form, qMsg));
  return { el, refresh, title: 'Quotas' };
}

// ------------------------------------------------------------------------ settings & start
function initSettings() {
  const panel = $('#settings');
  const toggle = $('#settings-toggle');
  const input = $('#token');
  const state = $('#token-state');
  const show = () => {
    const t = token();
    state.textContent = t ? 'A token is set.' : 'No token set.';
    toggle.classList.toggle('has-token', Boolean(t));
  };
  toggle.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) input.focus();
  });
  $('#settings-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    try { localStorage.setItem(TOKEN_KEY, input.value.trim()); } catch { /* private mode */ }
    input.value = '';
    show();
    state.textContent = token() ? 'Token saved.' : 'Token cleared.';
  });
  $('#token-clear').addEventListener('click', () => {
    try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
    input.value = '';
    show();
  });
  show();
  const pause = $('#pause');
  pause.addEventListener('click', () => {
    app.paused = !app.paused;
    pause.textContent = app.paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(app.paused));
    if (!app.paused) tick(true);
    else $('#live').className = 'live paused';
  });
}

function start() {
  initSettings();
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
  setInterval(() => tick(), REFRESH_MS);
  route();
}

start();

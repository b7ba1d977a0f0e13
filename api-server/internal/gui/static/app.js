// Weft GUI: plain JavaScript module, no build step. Every page reads the
// REST API and the GUI's summary API (/gui/api/) with the token kept in
// sessionStorage, and refreshes itself every POLL_MS (short polling).
import { toYAML } from './yaml.js';

const POLL_MS = 2000;
// CA_WARNING_MS is gui.CAWarning: a CA root expiring sooner is a problem.
const CA_WARNING_MS = 30 * 24 * 3600 * 1000;
const TOKEN_KEY = 'weft.token';
const POLICY_COLLECTIONS = ['traffic-permissions', 'traffic-routes', 'health-checks', 'circuit-breakers', 'fault-injections',
  'traffic-logs', 'traffic-traces', 'retries', 'timeouts', 'proxytemplates'];

const main = document.getElementById('main');
const live = document.getElementById('live');
let timer = null;
let generation = 0; // bumped on every navigation: stale refreshes are dropped

// h builds an element; children are nodes or text (never parsed as HTML).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function seg(s) { return encodeURIComponent(s); }

// --- authentication ------------------------------------------------------

// A sign-in link <api>/gui/?token=... stores the token and removes it from
// the address bar (and so from the history) before anything else runs.
function takeTokenFromURL() {
  const url = new URL(window.location.href);
  const t = url.searchParams.get('token');
  if (t === null) return;
  url.searchParams.delete('token');
  if (t.trim() !== '') sessionStorage.setItem(TOKEN_KEY, t.trim());
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

class HTTPError extends Error {
  constructor(status, details) { super(details); this.status = status; }
}

async function api(path) {
  const headers = { Accept: 'application/json' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  const resp = await fetch(path, { headers, cache: 'no-store' });
  if (!resp.ok) {
    let details = resp.statusText;
    try { const body = await resp.json(); details = body.details || body.title || details; } catch (e) { /* not JSON */ }
    throw new HTTPError(resp.status, details);
  }
  return resp.json();
}

// optional reads an endpoint that may not exist on this control plane:
// 404 (or 501) is "not available" instead of an error.
async function optional(path) {
  try { return { data: await api(path) }; } catch (e) {
    if (e instanceof HTTPError && (e.status === 404 || e.status === 501)) return { missing: true };
    throw e;
  }
}

// optionalWhy is optional for endpoints another service answers (the
// config dump: an xds-server): also 503/504, with the reason shown.
async function optionalWhy(path) {
  try { return { data: await api(path) }; } catch (e) {
    if (e instanceof HTTPError && [404, 501, 503, 504].includes(e.status)) return { missing: true, reason: e.message };
    throw e;
  }
}

// configDump shows a config dump: who answered, per type its version and
// ACK/NACK state, and the resources (collapsed).
function configDump(xds) {
  if (xds.missing) return h('p', { class: 'muted', id: 'dp-xds' }, `not available${xds.reason ? ': ' + xds.reason : ' on this control plane'}`);
  const d = xds.data;
  const source = d.source === 'stream' ? `sent on its stream by xds-server ${d.instanceId}` : `computed now by xds-server ${d.instanceId} (its stream is elsewhere or closed; no secrets)`;
  return h('div', { id: 'dp-xds' },
    h('p', {}, source + (d.truncated ? '; some resources left out (size limit)' : '')),
    d.error ? h('p', { class: 'error' }, d.error) : null,
    table('xDS resource types', ['Type', 'Version', 'State', 'Resources', 'Last error'], (d.types || []).map((t) => [
      t.typeUrl.slice(t.typeUrl.lastIndexOf('.') + 1), t.version || '—', t.state || '—', String(t.total || 0), t.lastError || '']),
    'no configuration'),
    h('details', { 'data-key': 'xds' }, h('summary', {}, 'Resources (JSON, private keys redacted)'), h('pre', {}, JSON.stringify(d.types || [], null, 2))));
}

function signIn(message) {
  stop();
  document.getElementById('signout').hidden = true;
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const err = message ? h('p', { class: 'error', role: 'alert', id: 'signin-error' }, message) : null;
  const form = h('form', { class: 'signin', onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  } },
  h('label', { for: 'token' }, 'API token'),
  input,
  h('p', { id: 'token-help', class: 'muted' }, 'A user token of this control plane (weftctl up prints a sign-in link). It is kept in this browser tab only.'),
  h('button', { type: 'submit' }, 'Sign in'));
  main.replaceChildren(h('h1', {}, 'Sign in to Weft'), err, form);
  input.focus();
}

function handleError(e, where) {
  if (e instanceof HTTPError && e.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    signIn('Sign-in failed: the control plane refused the token (' + e.message + '). Paste a valid token.');
    return;
  }
  const msg = e instanceof HTTPError ? `${e.status}: ${e.message}` : String(e.message || e);
  where.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Could not load: ' + msg));
}

// --- formatting ------------------------------------------------------------

function status(s) { return h('span', { class: s === 'online' ? 'online' : 'offline' }, s === 'online' ? '● online' : '○ offline'); }
function when(t) { return t ? new Date(t).toISOString().replace('.000Z', 'Z') : '—'; }
function tags(obj) { return Object.keys(obj || {}).sort().map((k) => h('span', { class: 'tag' }, `${k}=${obj[k]}`)); }
function table(caption, head, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}
function caState(c) {
  if (c.state === 'expired' || c.state === 'expiring') return h('span', { class: 'offline' }, c.state);
  return c.state === 'unknown' ? `unknown: ${c.error || ''}` : c.state;
}
function card(label, n, sub) { return h('div', { class: 'card' }, h('span', { class: 'n' }, n), label, sub ? h('div', { class: 'sub' }, sub) : null); }
function dpLink(mesh, name) { return h('a', { href: `#/meshes/${seg(mesh)}/dataplanes/${seg(name)}` }, name); }

// --- pages: each returns {mount(el), refresh(el)} --------------------------

const pages = {
  overview() {
    return {
      title: 'Overview',
      async refresh(el) {
        const o = await api('/gui/api/overview');
        el.replaceChildren(
          h('h2', {}, 'Problems'),
          o.problems.length ? h('ul', { class: 'problems' }, o.problems.map((p) => h('li', {}, h('span', { class: 'problem-kind' }, p.kind + ': '), h('a', { href: p.link }, p.message))),
            o.problemsTruncated ? h('li', {}, `… and ${o.problemsTruncated} more`) : null) : h('p', { id: 'no-problems' }, 'No problems.'),
          h('h2', {}, 'At a glance'),
          h('div', { class: 'cards' },
            card('meshes', o.meshes.length),
            card('zones', o.zones.total, `${o.zones.online} online, ${o.zones.offline} offline`),
            card('dataplanes', o.dataplanes.total, `${o.dataplanes.online} online, ${o.dataplanes.offline} offline`),
            card('zone ingresses', o.ingresses)),
          h('h2', {}, 'Meshes'),
          table('Meshes', ['Mesh', 'mTLS backend', 'Services', 'Dataplanes', 'Online', 'Offline'],
            o.meshes.map((m) => [h('a', { href: `#/meshes/${seg(m.name)}` }, m.name), m.mtls || 'off', m.services, m.dataplanes.total, m.dataplanes.online, m.dataplanes.offline]),
            'No meshes yet.'),
          h('h2', {}, 'Certificate authorities'),
          h('div', { id: 'overview-cas' }, table('Mesh CAs, expired and expiring first', ['Mesh', 'Backend', 'Type', 'Enabled', 'Root expires', 'State'],
            (o.cas || []).map((c) => [h('a', { href: `#/meshes/${seg(c.mesh)}` }, c.mesh), c.name, c.type, c.enabled ? 'yes' : 'no', when(c.notAfter), caState(c)]),
            'No mesh has an mTLS backend.')));
      },
    };
  },

  zones() {
    return {
      title: 'Zones',
      async refresh(el) {
        const z = await api('/gui/api/zones');
        el.replaceChildren(
          table('Zones', ['Zone', 'Status', 'Connected since', 'Last sync', 'Dataplanes', 'Ingresses', 'Global replica'],
            z.zones.map((x) => [h('a', { href: `#/zones/${seg(x.name)}` }, x.name), x.online ? status('online') : h('span', {}, status('offline'), ' — ', x.reason),
              when(x.connectedSince), when(x.lastSync), x.dataplanes, x.ingresses, x.globalReplica || '—']),
            'No zones known to this control plane.'),
          h('h2', {}, 'Zone ingresses'),
          ingressTable(z.ingresses));
      },
    };
  },

  zone(name) {
    return {
      title: 'Zone ' + name,
      async refresh(el) {
        const z = await api('/gui/api/zones');
        const x = z.zones.find((q) => q.name === name);
        if (!x) { el.replaceChildren(h('p', { class: 'error' }, `Zone ${name} is not known here.`)); return; }
        el.replaceChildren(h('dl', { class: 'props' },
          h('dt', {}, 'Status'), h('dd', { id: 'zone-status' }, x.online ? status('online') : h('span', {}, status('offline'), ' — ', x.reason)),
          h('dt', {}, 'Enabled'), h('dd', {}, x.enabled ? 'yes' : 'no'),
          h('dt', {}, 'Connected since'), h('dd', {}, when(x.connectedSince)),
          h('dt', {}, 'Last sync'), h('dd', {}, when(x.lastSync)),
          h('dt', {}, 'Global replica'), h('dd', {}, x.globalReplica || '—'),
          h('dt', {}, 'Dataplanes'), h('dd', {}, h('a', { href: `#/dataplanes?zone=${seg(name)}` }, String(x.dataplanes))),
          h('dt', {}, 'Rejected changes'), h('dd', {}, x.nacks ? `${x.nacks}: ${x.lastError}` : 'none')),
        h('h2', {}, 'Ingresses'), ingressTable(z.ingresses.filter((i) => i.zone === name)));
      },
    };
  },

  meshes() {
    return {
      title: 'Meshes',
      async refresh(el) {
        const o = await api('/gui/api/overview');
        el.replaceChildren(table('Meshes', ['Mesh', 'mTLS backend', 'Services', 'Dataplanes'],
          o.meshes.map((m) => [h('a', { href: `#/meshes/${seg(m.name)}` }, m.name), m.mtls || 'off', m.services, `${m.dataplanes.online}/${m.dataplanes.total} online`]),
          'No meshes yet.'));
      },
    };
  },

  mesh(mesh, tab, params) {
    tab = tab || 'services';
    const nav = h('ul', { class: 'tabs' }, ['services', 'dataplanes', 'policies'].map((t) =>
      h('li', {}, h('a', { href: `#/meshes/${seg(mesh)}/${t}`, 'aria-current': t === tab ? 'page' : null }, t[0].toUpperCase() + t.slice(1)))));
    if (tab === 'dataplanes') return dataplanesPage('Mesh ' + mesh, nav, { ...params, mesh });
    return {
      title: 'Mesh ' + mesh,
      head: nav,
      async refresh(el) {
        if (tab === 'policies') {
          const lists = await Promise.all(POLICY_COLLECTIONS.map((c) => optional(`/meshes/${seg(mesh)}/${c}?size=100`).then((r) => [c, r])));
          el.replaceChildren(...lists.map(([c, r]) => h('section', {}, h('h2', {}, c),
            r.missing ? h('p', { class: 'muted' }, 'not available') : table(c, ['Name', 'Origin', 'YAML'],
              r.data.items.map((p) => [p.name, p.origin || '—', h('details', { 'data-key': c + '/' + p.name }, h('summary', {}, `YAML of ${p.name}`), h('pre', {}, toYAML(p)))]), 'None.'))));
          return;
        }
        const [s, cas] = await Promise.all([api(`/gui/api/meshes/${seg(mesh)}/services`), optional(`/meshes/${seg(mesh)}/ca`)]);
        const now = Date.now();
        const state = (b) => caState({ ...b, state: !b.notAfter ? 'unknown' : Date.parse(b.notAfter) <= now ? 'expired' : Date.parse(b.notAfter) - now < CA_WARNING_MS ? 'expiring' : 'ok' });
        el.replaceChildren(table('Services', ['Service', 'VIP', 'Instances per zone', 'Healthy'],
          s.services.map((x) => [h('a', { href: `#/meshes/${seg(mesh)}/dataplanes?tag=${seg('weft.io/service:' + x.name)}` }, x.name), x.vip || '—',
            Object.keys(x.zones).sort().map((z) => h('div', {}, `${z || 'local'}: ${x.zones[z].online} online, ${x.zones[z].offline} offline`)),
            `${x.healthy}/${x.total}`]), 'No services: no dataplane has an inbound yet.'),
        h('h2', {}, 'Certificate authorities'),
        h('div', { id: 'mesh-cas' }, cas.missing ? h('p', { class: 'muted' }, 'not available on this control plane')
          : table('CA backends', ['Backend', 'Type', 'Enabled', 'Root expires', 'State'],
            cas.data.backends.map((b) => [b.name, b.type, b.enabled ? 'yes' : 'no', when(b.notAfter), state(b)]),
            'mTLS is off: this mesh has no CA backend.')));
      },
    };
  },

  dataplanes(params) { return dataplanesPage('Dataplanes', null, params); },

  dataplane(mesh, name) {
    return {
      title: `Dataplane ${name}`,
      head: h('p', {}, h('a', { href: `#/meshes/${seg(mesh)}/dataplanes` }, `← dataplanes of mesh ${mesh}`)),
      async refresh(el) {
        const base = `/meshes/${seg(mesh)}/dataplanes/${seg(name)}`;
        const [d, spec, pol, xds] = await Promise.all([api(`/gui/api${base}`), api(base), optional(`${base}/policies`), optionalWhy(`${base}/xds`)]);
        el.replaceChildren(h('dl', { class: 'props' },
          h('dt', {}, 'Status'), h('dd', { id: 'dp-status' }, status(d.status)),
          h('dt', {}, 'Mesh'), h('dd', {}, h('a', { href: `#/meshes/${seg(mesh)}` }, mesh)),
          h('dt', {}, 'Zone'), h('dd', {}, d.zone ? h('a', { href: `#/zones/${seg(d.zone)}` }, d.zone) : '—'),
          h('dt', {}, 'Services'), h('dd', {}, (d.services || []).join(', ') || '—'),
          h('dt', {}, 'Tags'), h('dd', { id: 'dp-tags' }, tags(d.tags)),
          h('dt', {}, 'xds-server replica'), h('dd', {}, d.replica || '—'),
          h('dt', {}, 'Proxy'), h('dd', {}, d.proxyKind || '—'),
          h('dt', {}, 'Connected since'), h('dd', {}, when(d.connectedSince)),
          h('dt', {}, 'Certificate expiry'), h('dd', {}, when(d.certExpiry)),
          h('dt', {}, 'Rejected configs'), h('dd', {}, d.nacks ? `${d.nacks}: ${d.lastError}` : 'none')),
        h('h2', {}, 'Matching policies'),
        pol.missing ? h('p', { class: 'muted' }, 'not available on this control plane') : h('pre', {}, toYAML(pol.data)),
        h('h2', {}, 'Dataplane'),
        h('pre', {}, toYAML(spec)),
        h('h2', {}, 'Config dump'),
        configDump(xds));
      },
    };
  },
};

function ingressTable(list) {
  return table('Zone ingresses', ['Ingress', 'Zone', 'Address', 'Available services'],
    list.map((i) => [i.name, i.zone, i.address, i.services.length ? i.services.map((s) => h('div', {}, `${s.mesh}: `, tags(s.tags), ` ×${s.instances}`)) : '—']),
    'No zone ingresses.');
}

// dataplanesPage is the filtered, paged list (server-side: /gui/api/dataplanes).
function dataplanesPage(title, head, params) {
  const q = { name: params.name || '', tag: params.tag || '', status: params.status || '', zone: params.zone || '', offset: Number(params.offset) || 0 };
  const input = (id, label, value, extra) => h('label', { for: id }, label, h('input', { id, name: id, value, ...extra }));
  const statusSel = h('select', { id: 'f-status', name: 'status' }, ['', 'online', 'offline'].map((s) => h('option', { value: s, selected: s === q.status }, s || 'any')));
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const p = new URLSearchParams();
    for (const k of ['name', 'tag', 'status', 'zone']) if (f.get(k)) p.set(k, f.get(k));
    const path = params.mesh ? `#/meshes/${seg(params.mesh)}/dataplanes` : '#/dataplanes';
    window.location.hash = path + (p.toString() ? '?' + p : '');
  } },
  input('name', 'Name contains', q.name, { maxlength: 253 }),
  input('tag', 'Tag (key:value)', q.tag, { maxlength: 500, placeholder: 'weft.io/service:web' }),
  h('label', { for: 'f-status' }, 'Status', statusSel),
  input('zone', 'Zone', q.zone, { maxlength: 63 }),
  h('button', { type: 'submit' }, 'Filter'));
  return {
    title,
    head: [head, form],
    async refresh(el) {
      const p = new URLSearchParams({ offset: q.offset, size: 50 });
      for (const k of ['name', 'tag', 'status', 'zone']) if (q[k]) p.set(k, q[k]);
      if (params.mesh) p.set('mesh', params.mesh);
      const page = await api('/gui/api/dataplanes?' + p);
      const move = (off) => {
        const np = new URLSearchParams(window.location.hash.split('?')[1] || '');
        np.set('offset', off);
        return window.location.hash.split('?')[0] + '?' + np;
      };
      const from = page.matched ? page.offset + 1 : 0;
      el.replaceChildren(
        h('p', { id: 'dp-count' }, `${page.matched} of ${page.total} dataplanes match; showing ${from}–${page.offset + page.items.length}.`),
        table('Dataplanes', ['Name', 'Mesh', 'Zone', 'Status', 'Tags', 'xds-server', 'Certificate expiry'],
          page.items.map((d) => [dpLink(d.mesh, d.name), d.mesh, d.zone || '—', status(d.status), tags(d.tags), d.replica || '—', when(d.certExpiry)]),
          'No dataplanes match.'),
        h('nav', { class: 'pager', 'aria-label': 'Pages' },
          page.offset > 0 ? h('a', { href: move(Math.max(0, page.offset - page.size)) }, '← previous') : null,
          page.offset + page.items.length < page.matched ? h('a', { href: move(page.offset + page.size) }, 'next →') : null));
    },
  };
}

// --- routing -----------------------------------------------------------------

function parseRoute() {
  const [path, query] = (window.location.hash.replace(/^#/, '') || '/').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ''));
  if (parts.length === 0) return pages.overview();
  if (parts[0] === 'zones') return parts[1] ? pages.zone(parts[1]) : pages.zones();
  if (parts[0] === 'dataplanes') return pages.dataplanes(params);
  if (parts[0] === 'meshes' && parts.length === 1) return pages.meshes();
  if (parts[0] === 'meshes' && parts[2] === 'dataplanes' && parts[3]) return pages.dataplane(parts[1], parts[3]);
  if (parts[0] === 'meshes') return pages.mesh(parts[1], parts[2], params);
  return { title: 'Not found', async refresh(el) { el.replaceChildren(h('p', {}, 'No such page. '), h('a', { href: '#/' }, 'Overview')); } };
}

function stop() { if (timer) clearTimeout(timer); timer = null; generation++; }

async function route() {
  stop();
  const gen = generation;
  if (!token()) { signIn(); return; }
  document.getElementById('signout').hidden = false;
  const page = parseRoute();
  const body = h('div', { id: 'content' }, h('p', {}, 'Loading…'));
  document.title = page.title + ' · Weft';
  main.replaceChildren(h('h1', {}, page.title), ...[page.head].flat().filter(Boolean), body);
  const tick = async () => {
    try {
      // Keep what the reader opened (YAML, config dump) open across refreshes.
      const open = new Set([...body.querySelectorAll('details[open]')].map((d) => d.dataset.key));
      await page.refresh(body);
      if (!performance.getEntriesByName('weft:first-content').length) performance.mark('weft:first-content');
      body.querySelectorAll('details').forEach((d) => { if (open.has(d.dataset.key)) d.open = true; });
      if (gen !== generation) return;
      live.textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      if (gen !== generation) return;
      handleError(e, body);
      if (e instanceof HTTPError && e.status === 401) return;
    }
    if (gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  await tick();
  if (gen === generation) loadIndex();
}

let indexShown = false;
async function loadIndex() {
  if (indexShown) return;
  try {
    // GET / carries the mode and zone: no need for the (larger) overview.
    const i = await api('/');
    const where = i.mode === 'zone' ? `zone control plane “${i.zone}” (meshes and policies are read-only copies from global)` : `${i.mode} control plane`;
    document.getElementById('cp').textContent = `${where} · ${i.instanceId || ''}`;
    indexShown = true;
  } catch (e) { /* shown on the next navigation */ }
}

document.getElementById('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  indexShown = false;
  signIn();
});
takeTokenFromURL();
window.addEventListener('hashchange', route);
route();

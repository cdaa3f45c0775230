// storectl ui: the page. Every view is drawn from the JSON API with DOM nodes; stored
// text only ever becomes a text node (never markup), after the CLI's escaping of control
// and invisible characters (the table of ranges comes from /api/info).
'use strict';

/** Code-point ranges shown as \u{HEX}, from the server (the CLI's table). */
let escapedRanges = [];

function isEscaped(code) {
  return escapedRanges.some(([first, last]) => code >= first && code <= last);
}

/**
 * `text` with control and invisible characters made visible as the CLI makes them:
 * `\n`, `\t`, `\r`, else `\u{202E}`. In multi-line blocks newlines and tabs stay as they
 * are (the block is preformatted); every other escape applies.
 */
function visible(text, multiline = false) {
  let out = '';
  for (const ch of String(text)) {
    const code = ch.codePointAt(0);
    if (ch === '\n') out += multiline ? '\n' : '\\n';
    else if (ch === '\t') out += multiline ? '\t' : '\\t';
    else if (ch === '\r') out += '\\r';
    else if (isEscaped(code)) out += `\\u{${code.toString(16).toUpperCase()}}`;
    else out += ch;
  }
  return out;
}

/**
 * An element. `attrs` are set with setAttribute (or as listeners for `on*` functions);
 * string children become text nodes through `visible`, nodes are appended as they are.
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return node;
}

/** A preformatted block: strings as they are, any other value as indented JSON. */
function block(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  const pre = document.createElement('pre');
  pre.textContent = visible(text, true);
  return pre;
}

function table(headers, rows, attrs = {}) {
  return el('table', attrs,
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.length
      ? rows
      : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, '(none)'))));
}

/** A row of cells; a cell is a string, a node, or [content, attrs]. */
function row(...cells) {
  return el('tr', {}, cells.map((cell) => Array.isArray(cell)
    ? el('td', cell[1], cell[0])
    : el('td', {}, cell)));
}

function hash(...segments) {
  return '#/' + segments.map(encodeURIComponent).join('/');
}

function withQuery(base, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${base}?${text}` : base;
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const response = await fetch(withQuery(path, params), {
    headers: { Accept: 'application/json' },
    credentials: 'same-origin',
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(body?.error?.message ?? `${response.status} ${response.statusText}`,
      response.status);
  }
  return body;
}

function time(text) {
  return text ? String(text).replace('T', ' ').replace(/\.\d+/, '') : '';
}

function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

function failure(err) {
  return el('p', { class: 'error', role: 'alert' }, err.message ?? String(err));
}

// ---- sessions ---------------------------------------------------------------------------

const STATUSES = ['active', 'completed', 'failed', 'cancelled', 'expired'];

async function sessionsView(view, params) {
  const filters = el('form', { class: 'filters', id: 'session-filters' },
    el('label', {}, 'User', el('input', { name: 'user', value: params.get('user') ?? '' })),
    el('label', {}, 'Status', el('select', { name: 'status' },
      el('option', { value: '' }, 'any'),
      STATUSES.map((s) => el('option', { value: s, selected: params.get('status') === s }, s)))),
    el('label', {}, 'Per page', el('select', { name: 'limit' },
      ['10', '25', '50', '100'].map((n) =>
        el('option', { value: n, selected: (params.get('limit') ?? '25') === n }, n)))),
    el('button', { type: 'submit' }, 'Filter'));
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const form = new FormData(filters);
    location.hash = withQuery('#/sessions', {
      user: form.get('user'), status: form.get('status'), limit: form.get('limit'),
    });
  });
  view.replaceChildren(el('h2', {}, 'Sessions'), filters);
  const page = await api('/api/sessions', {
    user: params.get('user'), status: params.get('status'),
    limit: params.get('limit'), cursor: params.get('cursor'),
  });
  const rows = page.items.map((s) => row(
    [el('a', { href: hash('session', s.id), class: 'session-link' }, s.id), { class: 'id' }],
    s.user_id, s.status,
    [String(s.metrics.request_count), { class: 'num' }],
    [String(s.metrics.error_count), { class: 'num' }],
    time(s.last_activity)));
  const same = { user: params.get('user'), status: params.get('status'), limit: params.get('limit') };
  append(view, [
    table(['id', 'user', 'status', 'requests', 'errors', 'last activity'], rows,
      { id: 'sessions' }),
    el('div', { class: 'pager' },
      params.get('cursor') ? el('a', { href: withQuery('#/sessions', same) }, '« First page') : null,
      page.next_cursor
        ? el('a', { href: withQuery('#/sessions', { ...same, cursor: page.next_cursor }), id: 'next-page' },
          'Next page »')
        : el('span', { class: 'muted' }, 'last page'))]);
}

// ---- one session ------------------------------------------------------------------------

async function sessionView(view, id) {
  view.replaceChildren(el('h2', {}, 'Session ', el('code', {}, id)));
  const [session, messages, context, artifacts] = await Promise.allSettled([
    api('/api/session', { id }),
    api('/api/messages', { session: id, limit: 50 }),
    api('/api/context', { session: id }),
    api('/api/artifacts', { scope: id }),
  ]);
  append(view, [
    el('section', { id: 'record' }, sessionRecord(session)),
    el('section', { id: 'conversation' }, el('h3', {}, 'Conversation'),
      settled(messages, (body) => conversation(id, body.messages))),
    el('section', { id: 'context' }, el('h3', {}, 'Task context'),
      settled(context, taskContext)),
    el('section', { id: 'checkpoints' }, el('h3', {}, 'Checkpoints'),
      el('p', {}, el('a', { href: hash('thread', id), id: 'thread-link' },
        'Checkpoint chain of thread ', el('code', {}, id)))),
    el('section', { id: 'artifacts' }, el('h3', {}, 'Artifacts'),
      settled(artifacts, (body) => artifactPage(id, body)))]);
}

function settled(result, draw) {
  return result.status === 'fulfilled' ? draw(result.value) : failure(result.reason);
}

function sessionRecord(result) {
  if (result.status === 'rejected') {
    return result.reason.status === 404
      ? el('p', { class: 'muted' }, 'No session record with this id (its other data is below, if any).')
      : failure(result.reason);
  }
  const s = result.value;
  return table(['field', 'value'], [
    row('user', s.user_id), row('status', s.status),
    row('created', time(s.created_at)), row('last activity', time(s.last_activity)),
    row('ended', time(s.ended_at)),
    row('requests', String(s.metrics.request_count)),
    row('processing ms', String(s.metrics.total_processing_ms)),
    row('errors', String(s.metrics.error_count)),
    row('metadata', block(s.metadata)),
  ], { class: 'record' });
}

function message(m) {
  return el('article', { class: `message role-${/^[a-z]+$/.test(m.role) ? m.role : 'other'}` },
    el('header', {},
      el('span', { class: 'role' }, m.role),
      el('span', {}, `#${m.sequence}`),
      el('span', {}, time(m.created_at)),
      m.client_id ? el('span', {}, 'client id ', el('code', {}, m.client_id)) : null),
    block(m.content),
    m.metadata && Object.keys(m.metadata).length
      ? el('details', {}, el('summary', {}, 'metadata'), block(m.metadata)) : null);
}

function conversation(session, messages) {
  const list = el('div', { class: 'messages' }, messages.map(message));
  if (!messages.length) return el('p', { class: 'muted' }, 'No messages.');
  const container = el('div', {});
  let first = messages[0].sequence;
  if (first > 1) {
    const older = el('button', { type: 'button', id: 'older' }, 'Older messages');
    older.addEventListener('click', async () => {
      try {
        const page = await api('/api/messages', { session, before: first, limit: 50 });
        list.prepend(...page.messages.map(message));
        first = page.messages.length ? page.messages[0].sequence : 1;
        if (first <= 1) older.remove();
      } catch (err) {
        older.replaceWith(failure(err));
      }
    });
    container.append(older);
  }
  container.append(list);
  return container;
}

function taskContext(body) {
  const c = body.context;
  if (!c) return el('p', { class: 'muted' }, 'No task context.');
  return el('div', {},
    table(['version', 'updated', 'value'],
      [row([String(c.version), { class: 'num', id: 'context-version' }], time(c.updated_at), block(c.value))]),
    el('p', { class: 'muted' }, `Versions kept: ${body.versions_kept}.`),
    table(['kept version', 'stored', 'value'],
      (body.versions || []).map((v) => row([String(v.version), { class: 'num' }], time(v.updated_at), block(v.value)))));
}

function artifactTable(scope, artifacts) {
  const rows = artifacts.flatMap((a) => a.versions.map((v) => row(
    [v.name, { class: 'id' }], [String(v.version), { class: 'num' }], v.content_type,
    [bytes(v.size), { class: 'num', title: `${v.size} bytes` }],
    [v.sha256, { class: 'id sha256' }], time(v.created_at),
    el('a', {
      href: withQuery('/api/artifact', { scope, name: v.name, version: v.version }),
      download: '', class: 'download',
    }, 'download'))));
  return table(['name', 'version', 'content type', 'size', 'sha256', 'created', ''], rows,
    { class: 'artifacts' });
}

/** A page of a scope's artifacts, and a link to the next page when there is one. */
function artifactPage(scope, body) {
  return el('div', {}, artifactTable(scope, body.artifacts),
    body.next_after
      ? el('p', {}, el('a', { href: withQuery(hash('artifacts', scope), { after: body.next_after }), class: 'more-artifacts' },
        'More artifacts »'))
      : null);
}

// ---- artifacts by scope ------------------------------------------------------------------

async function scopesView(view, params) {
  // Opening a scope by name works also where the backend cannot list scopes.
  const open = el('form', { class: 'filters', id: 'open-scope', autocomplete: 'off' },
    el('label', {}, 'Scope', el('input', { name: 'scope', required: true })),
    el('button', { type: 'submit' }, 'Open'));
  open.addEventListener('submit', (event) => {
    event.preventDefault();
    const scope = new FormData(open).get('scope');
    if (scope) location.hash = hash('artifacts', scope);
  });
  view.replaceChildren(el('h2', {}, 'Artifact scopes'), open);
  const page = await api('/api/artifacts', { after: params.get('after') });
  append(view, [
    page.scopes.length
      ? el('ul', {}, page.scopes.map((s) => el('li', {}, el('a', { href: hash('artifacts', s) }, s))))
      : el('p', { class: 'muted' }, 'No artifacts.'),
    page.next_after
      ? el('a', { href: withQuery('#/artifacts', { after: page.next_after }) }, 'More scopes »')
      : null]);
}

async function scopeView(view, scope, params) {
  view.replaceChildren(el('h2', {}, 'Artifacts of scope ', el('code', {}, scope)));
  const body = await api('/api/artifacts', { scope, after: params.get('after') });
  view.append(artifactPage(scope, body));
}

// ---- checkpoint chain ----------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
const ROW = 34;
const LANE = 26;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return node;
}

/**
 * Places one checkpoint namespace's nodes: a row each, depth first from the oldest root
 * (a parent is always above its children); a first child stays in its parent's lane,
 * every further child opens a lane. Nodes no root leads to (a checkpoint that is its own
 * parent, or a cycle of parents: corrupt data, but still data) are drawn after, each
 * unplaced one starting a walk of its own; every node is placed once.
 */
function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const children = new Map();
  const roots = [];
  for (const n of [...nodes].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    if (n.parent_id && byId.has(n.parent_id)) {
      if (!children.has(n.parent_id)) children.set(n.parent_id, []);
      children.get(n.parent_id).push(n);
    } else {
      roots.push(n);
    }
  }
  const placed = [];
  const seen = new Set();
  let lanes = 0;
  // Depth first with an explicit stack: a chain may be hundreds of checkpoints long.
  const walk = (start) => {
    const stack = start.slice().reverse().map((n) => ({ n, lane: null }));
    while (stack.length) {
      const item = stack.pop();
      if (seen.has(item.n.id)) continue;
      seen.add(item.n.id);
      const lane = item.lane ?? lanes++;
      placed.push({ node: item.n, row: placed.length, lane });
      const kids = (children.get(item.n.id) ?? []).filter((kid) => !seen.has(kid.id));
      for (let i = kids.length - 1; i >= 0; i--) {
        stack.push({ n: kids[i], lane: i === 0 ? lane : null });
      }
    }
  };
  walk(roots);
  for (const n of [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    if (!seen.has(n.id)) walk([n]);
  }
  return { placed, lanes, byId };
}

function nodeLabel(n) {
  const parts = [];
  if (n.metadata.step !== undefined) parts.push(`step ${JSON.stringify(n.metadata.step)}`);
  if (typeof n.metadata.source === 'string') parts.push(n.metadata.source);
  if (n.pending_writes) parts.push(`${n.pending_writes} write(s)`);
  const tail = n.id.length > 12 ? `…${n.id.slice(-8)}` : n.id;
  return parts.length ? `${tail}  ${parts.join(', ')}` : tail;
}

function graph(namespace, nodes, onSelect) {
  const { placed, lanes, byId } = layout(nodes);
  const labelX = 16 + lanes * LANE;
  const root = svg('svg', {
    width: labelX + 330, height: 40 + placed.length * ROW,
    role: 'group', 'aria-label': `checkpoint namespace ${visible(namespace)}`,
  });
  root.append(svg('text', { x: 8, y: 16, class: 'ns' },
    `checkpoint namespace ${JSON.stringify(namespace)}`));
  const at = new Map(placed.map((p) => [p.node.id, {
    x: 16 + p.lane * LANE, y: 40 + p.row * ROW,
  }]));
  const edges = svg('g', {});
  const points = svg('g', {});
  for (const p of placed) {
    const here = at.get(p.node.id);
    const parent = p.node.parent_id;
    if (parent && byId.has(parent)) {
      const from = at.get(parent);
      // A fork leaves its parent at once for the child's own (new) lane, then runs down it.
      const d = from.x === here.x
        ? `M${from.x},${from.y} V${here.y}`
        : `M${from.x},${from.y} C${from.x},${from.y + ROW / 2} ${here.x},${from.y + ROW / 2} `
          + `${here.x},${from.y + ROW} V${here.y}`;
      edges.append(svg('path', { d, class: 'edge' }));
    } else if (parent) {
      edges.append(svg('path', { d: `M${here.x},${here.y - ROW / 2} V${here.y}`, class: 'edge missing' }));
    }
    const group = svg('g', {
      class: `node${p.node.pending_writes ? ' has-writes' : ''}`, tabindex: 0, role: 'button',
      'data-checkpoint-id': p.node.id, 'aria-label': `checkpoint ${visible(p.node.id)}`,
    },
    svg('title', {}, `${p.node.id}${parent && !byId.has(parent) ? ` (parent ${parent} not stored)` : ''}`),
    svg('circle', { cx: here.x, cy: here.y, r: 7 }),
    svg('text', { x: labelX, y: here.y + 4 }, nodeLabel(p.node)));
    const select = () => onSelect(group, p.node);
    group.addEventListener('click', select);
    group.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); select(); }
    });
    points.append(group);
  }
  root.append(edges, points);
  return root;
}

async function threadView(view, thread, params) {
  view.replaceChildren(el('h2', {}, 'Checkpoints of thread ', el('code', {}, thread)));
  const body = await api('/api/checkpoints', { thread });
  if (!body.checkpoints.length) {
    view.append(el('p', { class: 'muted' }, 'No checkpoints in this thread.'));
    return;
  }
  const details = el('div', { class: 'details', id: 'checkpoint-details' },
    el('p', { class: 'muted' }, 'Select a checkpoint to see its channel values and pending writes.'));
  const byNamespace = new Map();
  for (const n of body.checkpoints) {
    if (!byNamespace.has(n.namespace)) byNamespace.set(n.namespace, []);
    byNamespace.get(n.namespace).push(n);
  }
  let selected = null;
  const onSelect = async (group, node) => {
    selected?.classList.remove('selected');
    selected = group;
    group.classList.add('selected');
    history.replaceState(null, '', withQuery(hash('thread', thread), { ns: node.namespace, checkpoint: node.id }));
    details.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    try {
      const tuple = await api('/api/checkpoint', { thread, ns: node.namespace, id: node.id });
      details.replaceChildren(...checkpointDetails(tuple));
    } catch (err) {
      details.replaceChildren(failure(err));
    }
  };
  const drawings = el('div', { class: 'graph', id: 'checkpoint-graph' },
    [...byNamespace].map(([ns, nodes]) => graph(ns, nodes, onSelect)));
  append(view, [
    body.truncated
      ? el('p', { class: 'muted', id: 'truncated' },
        `The thread has more checkpoints: only the newest ${body.limit} are drawn.`)
      : null,
    el('div', { class: 'thread' }, drawings, details)]);
  const wanted = params.get('checkpoint');
  if (wanted) {
    const group = [...drawings.querySelectorAll('g.node')].find((g) => g.dataset.checkpointId === wanted);
    group?.dispatchEvent(new Event('click'));
  }
}

function checkpointDetails(tuple) {
  const c = tuple.checkpoint;
  return [
    el('h3', {}, 'Checkpoint ', el('code', {}, c.id)),
    table(['field', 'value'], [
      row('namespace', JSON.stringify(c.namespace)),
      row('parent', c.parent_id ? el('code', {}, c.parent_id) : '(root)'),
      row('created', time(c.created_at)),
      row('metadata', block(c.metadata)),
    ]),
    el('h3', {}, `Channel values (${Object.keys(c.channel_values).length})`),
    table(['channel', 'version', 'value'], Object.entries(c.channel_values).map(([channel, value]) =>
      row([channel, { class: 'id' }],
        Object.hasOwn(c.channel_versions, channel) ? String(c.channel_versions[channel]) : '',
        block(value))),
    { id: 'channel-values' }),
    el('h3', {}, `Pending writes (${tuple.pending_writes.length})`),
    table(['task', 'path', 'channel', 'index', 'value'], tuple.pending_writes.map((w) =>
      row([w.task_id, { class: 'id' }], w.task_path, w.channel, [String(w.index), { class: 'num' }], block(w.value))),
    { id: 'pending-writes' }),
  ];
}

// ---- health and metrics ----------------------------------------------------------------------

async function healthView(view) {
  view.replaceChildren(el('h2', {}, 'Health & metrics'));
  const [health, metrics] = await Promise.all([api('/api/health'), api('/api/metrics')]);
  const fixed = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
  append(view, [
    el('p', {}, 'Overall: ', el('span', { class: health.healthy ? 'ok' : 'bad', id: 'overall' },
      health.healthy ? 'healthy' : 'unhealthy')),
    table(['backend', 'kinds', 'healthy', 'latency ms', 'details', 'error'], health.backends.map((b) => row(
      b.backend, b.kinds.join(', '),
      [b.healthy ? 'yes' : 'no', { class: b.healthy ? 'ok' : 'bad' }],
      [fixed(b.latency_ms), { class: 'num' }],
      Object.entries(b.details).map(([k, v]) => `${k}=${v}`).join(' '),
      b.error ?? '')), { id: 'backends' }),
    el('h3', {}, 'Latency by operation'),
    el('p', { class: 'muted' },
      "The metrics layer's figures for this inspector's own requests since it started."),
    table(['operation', 'backend', 'count', 'errors', 'p50 ms', 'p95 ms', 'p99 ms'],
      metrics.operations.map((o) => row(o.operation, o.backend,
        [String(o.count), { class: 'num' }], [String(o.errors), { class: 'num' }],
        [fixed(o.p50_ms), { class: 'num' }], [fixed(o.p95_ms), { class: 'num' }],
        [fixed(o.p99_ms), { class: 'num' }])), { id: 'operations' }),
    el('h3', {}, 'Read cache'),
    metrics.cache
      ? table(['hits', 'misses', 'entries', 'bytes'], [row(String(metrics.cache.hits),
        String(metrics.cache.misses), String(metrics.cache.entries), String(metrics.cache.bytes))])
      : el('p', { class: 'muted' }, 'The read cache is off.'),
    el('p', {}, el('button', { type: 'button', onclick: () => route() }, 'Refresh'))]);
}

// ---- routing -------------------------------------------------------------------------------------

async function route() {
  const view = document.getElementById('view');
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const params = new URLSearchParams(query);
  let segments;
  try {
    segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    segments = [];
  }
  const [name = 'sessions', arg] = segments;
  for (const link of document.querySelectorAll('nav a')) {
    const current = link.dataset.view === (name === 'session' ? 'sessions' : name);
    link.classList.toggle('current', current);
  }
  view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  try {
    if (name === 'session' && arg !== undefined) await sessionView(view, arg);
    else if (name === 'thread' && arg !== undefined) await threadView(view, arg, params);
    else if (name === 'artifacts' && arg !== undefined) await scopeView(view, arg, params);
    else if (name === 'artifacts') await scopesView(view, params);
    else if (name === 'health') await healthView(view);
    else await sessionsView(view, params);
  } catch (err) {
    view.append(failure(err));
  }
}

async function start() {
  // No ?token= to drop from the address bar: the server answers /?token= with a redirect
  // to / that sets the session cookie.
  document.getElementById('open-thread').addEventListener('submit', (event) => {
    event.preventDefault();
    const thread = new FormData(event.target).get('thread');
    if (thread) location.hash = hash('thread', thread);
  });
  try {
    const info = await api('/api/info');
    escapedRanges = info.escaped_ranges;
    const store = document.getElementById('store');
    store.replaceChildren(`read-only · namespace ${JSON.stringify(visible(info.namespace ?? ''))} · `
      + `${[...new Set(Object.values(info.backends))].join(', ')}`);
  } catch (err) {
    document.getElementById('view').replaceChildren(failure(err));
    return;
  }
  window.addEventListener('hashchange', route);
  await route();
}

start();

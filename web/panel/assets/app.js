// The agent panel: live pop-ups, notes and wrap-up, history, missed calls, follow-ups,
// presence, click-to-call and (for supervisors) the live board.
import { api, clear, countryName, duration, h, initials, when } from './dom.js';
import { LiveSocket } from './socket.js';

const $ = (id) => document.getElementById(id);
const app = {
  me: null,
  dispositions: [],
  calls: new Map(), // call id -> pop-up entry
  view: 'live',
  board: { agents: new Map(), calls: new Map() },
};

const OUTCOMES = {
  answered: 'Answered', noanswer: 'No answer', busy: 'Busy', abandoned: 'Abandoned',
  failed: 'Failed', transferred: 'Transferred',
};
const PRESENCE = { available: 'Available', paused: 'Paused', on_call: 'On a call', offline: 'Offline' };

// -- toasts and small pieces ----------------------------------------------------------------

function toast(text, kind = 'info', ms = 6000) {
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  $('toasts').append(el);
  window.setTimeout(() => el.remove(), ms);
}

function callButton(number, label = 'Call') {
  if (!number) return null;
  return h('button', {
    class: 'btn btn-call btn-small', type: 'button', title: `Call ${number}`,
    dataset: { number }, onclick: () => clickToCall(number),
  }, label);
}

function outcomeBadge(outcome) {
  return h('span', { class: `badge outcome-${outcome || 'unknown'}` }, OUTCOMES[outcome] || outcome || '—');
}

// -- click-to-call ------------------------------------------------------------------------------

const C2C_STEPS = [['calling_agent', 'Calling you'], ['calling_customer', 'Calling the customer'], ['connected', 'Connected']];

async function clickToCall(number) {
  showProgress({ state: 'starting', number, message: 'Checking the number…' });
  try {
    const attempt = await api('/panel/api/originate', { number });
    showProgress(attempt);
  } catch (e) {
    showProgress({ state: 'failed', number, reason: e.id || 'failed', message: e.message });
  }
}

function showProgress(p) {
  const box = $('c2c');
  box.hidden = false;
  box.dataset.state = p.state;
  box.dataset.reason = p.reason || '';
  const reached = C2C_STEPS.findIndex(([s]) => s === p.state);
  const steps = h('ol', { class: 'c2c-steps' }, C2C_STEPS.map(([s, label], i) => h('li', {
    class: p.state === 'failed' ? (i === 0 ? 'failed' : '') : (reached > i || p.state === 'ended' ? 'done' : reached === i ? 'current' : ''),
  }, label)));
  clear(box).append(
    h('div', { class: 'c2c-head' },
      h('strong', {}, p.state === 'failed' ? 'Call not connected' : p.state === 'ended' ? 'Call finished' : 'Click-to-call'),
      h('span', { class: 'c2c-number' }, p.number || ''),
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => { box.hidden = true; } }, 'Dismiss')),
    steps,
    h('p', { class: `c2c-message ${p.state === 'failed' ? 'is-error' : ''}`, id: 'c2c-message' }, p.message || ''),
  );
}

// -- pop-ups ------------------------------------------------------------------------------------

function entryFor(call) {
  let entry = app.calls.get(call.id);
  if (!entry) {
    entry = { call, card: null, el: null, notes: null, wrap: null, saved: false };
    app.calls.set(call.id, entry);
  }
  return entry;
}

function showCall(call, card) {
  const entry = entryFor(call);
  entry.call = { ...entry.call, ...call };
  if (card) entry.card = card;
  renderPopup(entry);
}

function statusLine(entry) {
  const c = entry.call;
  const mine = app.me && (c.agents || []).includes(app.me.username);
  if (c.state === 'ringing') {
    const where = (c.ringing || []).length ? `ringing at ${(c.ringing || []).join(', ')}` : 'stopped ringing';
    const via = c.queue ? ` · queue ${c.queue}` : '';
    const kind = c.click_to_call ? 'Your click-to-call' : c.direction === 'outbound' ? 'Outgoing call' : 'Incoming call';
    return [mine || c.click_to_call ? 'ringing' : 'elsewhere', `${kind} · ${where}${via}`];
  }
  if (c.state === 'answered') {
    if (c.answered_agent === (app.me && app.me.username)) return ['talking', 'On the call with you'];
    return ['elsewhere', `Answered by ${c.answered_agent || c.answered_by || 'someone else'}`];
  }
  const talk = c.talk_seconds ? ` · talked ${duration(c.talk_seconds)}` : '';
  return ['ended', `Call ended · ${OUTCOMES[c.outcome] || c.outcome || ''}${talk}`];
}

function renderPopup(entry) {
  const c = entry.call;
  const card = entry.card || {};
  if (!entry.el) {
    entry.notes = h('textarea', { class: 'notes', placeholder: 'Notes while you talk…', rows: 3, 'aria-label': 'Call notes' });
    entry.el = h('article', { class: 'popup', dataset: { callId: c.id } });
    $('popups').prepend(entry.el);
  }
  const [tone, text] = statusLine(entry);
  entry.el.className = `popup tone-${tone}`;
  entry.el.dataset.state = c.state;
  const number = card.number || c.number || c.caller || '';
  const known = Boolean(card.known);
  const title = known ? card.display_name : (number || 'Unknown number');
  const head = h('header', { class: 'popup-head' },
    h('div', { class: `avatar ${known ? '' : 'avatar-unknown'}` }, known ? initials(card.display_name) : '#'),
    h('div', { class: 'who' },
      h('h2', { class: 'caller-title' }, title),
      h('div', { class: 'sub' },
        known && card.company ? h('span', { class: 'company' }, card.company) : null,
        h('span', { class: 'number' }, number),
        callButton(number)),
      c.caller_name ? h('div', { class: 'callerid' }, h('span', { class: 'label' }, 'Caller ID '), h('span', { class: 'callerid-name' }, c.caller_name)) : null),
    h('div', { class: 'badges' },
      known ? h('span', { class: `badge kind-${card.kind}` }, card.kind === 'lead' ? 'Lead' : card.kind === 'contact' ? 'Contact' : 'Account') : h('span', { class: 'badge kind-unknown' }, 'New caller'),
      card.lead_status ? h('span', { class: `badge status-${card.lead_status}` }, card.lead_status) : null,
      card.lead_score !== null && card.lead_score !== undefined ? h('span', { class: 'badge score', title: 'Lead score (0–10)' }, `★ ${Number(card.lead_score).toFixed(1)}`) : null,
      card.do_not_call ? h('span', { class: 'badge dnc' }, 'Do not call') : null),
    c.state === 'ended' ? h('button', { class: 'close', type: 'button', title: 'Close', 'aria-label': 'Close', onclick: () => closePopup(entry) }, '×') : null,
  );
  const body = known ? knownBody(card) : unknownBody(entry, card, number);
  const parts = [h('div', { class: 'popup-status' }, h('span', { class: 'pulse' }), h('span', { class: 'status-text' }, text)), head, body];
  if (c.state !== 'ringing' || (c.agents || []).includes(app.me && app.me.username)) {
    parts.push(h('div', { class: 'popup-notes' }, entry.notes));
  }
  if (c.state === 'ended' && (c.wrapup || []).includes(app.me && app.me.username)) {
    parts.push(wrapupForm(entry));
  }
  clear(entry.el).append(...parts);
  $('live-empty').hidden = app.calls.size > 0;
}

function knownBody(card) {
  const facts = [
    ['Status', card.lead_status || (card.kind === 'contact' ? 'Customer' : '—')],
    ['Score', card.lead_score !== null && card.lead_score !== undefined ? `${Number(card.lead_score).toFixed(1)} / 10` : '—'],
    ['Owner', card.owner || 'Unassigned'],
    ['Country', countryName(card.country) || '—'],
  ];
  const interactions = (card.interactions || []).slice(0, 4);
  const followUps = card.follow_ups || [];
  return h('div', { class: 'popup-body' },
    h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
    h('div', { class: 'columns' },
      h('section', {},
        h('h3', {}, 'Last interactions'),
        interactions.length
          ? h('ul', { class: 'timeline' }, interactions.map((i) => h('li', {}, h('span', { class: `tl-kind tl-${i.kind}` }, i.kind), h('span', { class: 'tl-text' }, i.summary), h('time', {}, when(i.at)))))
          : h('p', { class: 'muted' }, 'No interactions yet.')),
      h('section', {},
        h('h3', {}, 'Open follow-ups'),
        followUps.length
          ? h('ul', { class: 'timeline' }, followUps.map((f) => h('li', {}, h('span', { class: 'tl-text' }, f.title), h('time', {}, when(f.due_at)))))
          : h('p', { class: 'muted' }, 'Nothing pending.'))),
    card.external_url ? h('a', { class: 'btn btn-secondary btn-small crm-link', href: card.external_url, target: '_blank', rel: 'noopener noreferrer' }, `Open in ${card.source || 'CRM'} ↗`) : null,
  );
}

function unknownBody(entry, card, number) {
  const country = countryName(card.country);
  const facts = h('dl', { class: 'facts' },
    h('div', {}, h('dt', {}, 'Number'), h('dd', {}, number || '—')),
    h('div', {}, h('dt', {}, 'Country'), h('dd', {}, country || '—')),
    h('div', {}, h('dt', {}, 'Line'), h('dd', {}, (card.line_type || '—').replace(/_/g, ' '))));
  if (entry.created) {
    return h('div', { class: 'popup-body' }, facts, h('p', { class: 'created' }, `✓ ${entry.created}`));
  }
  const first = h('input', { name: 'first_name', placeholder: 'First name', 'aria-label': 'First name' });
  const last = h('input', { name: 'last_name', placeholder: 'Last name', 'aria-label': 'Last name' });
  const company = h('input', { name: 'company', placeholder: 'Company', 'aria-label': 'Company' });
  const email = h('input', { name: 'email', type: 'email', placeholder: 'E-mail', 'aria-label': 'E-mail' });
  const create = async (kind) => {
    const body = { kind, phone: number, first_name: first.value, last_name: last.value, company: company.value };
    if (email.value) body.email = email.value;
    try {
      const r = await api('/panel/api/people', body);
      entry.created = `${kind === 'lead' ? 'Lead' : 'Contact'} ${r.outcome}: ${r.person.name || number}`;
      const lookup = await api(`/panel/api/lookup?number=${encodeURIComponent(number)}`);
      entry.card = lookup.card;
      renderPopup(entry);
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  return h('div', { class: 'popup-body' }, facts,
    h('form', { class: 'create-form', onsubmit: (ev) => ev.preventDefault() },
      h('h3', {}, 'Not in the CRM yet'),
      h('div', { class: 'grid2' }, first, last, company, email),
      h('div', { class: 'actions' },
        h('button', { class: 'btn btn-primary btn-small', type: 'button', onclick: () => create('lead') }, 'Create lead'),
        h('button', { class: 'btn btn-secondary btn-small', type: 'button', onclick: () => create('contact') }, 'Create contact'))));
}

function wrapupForm(entry) {
  if (entry.saved) {
    return h('div', { class: 'wrapup saved' }, h('span', {}, '✓ Saved to the call log'),
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => closePopup(entry) }, 'Close'));
  }
  if (!entry.wrap) {
    entry.wrap = { disposition: '', date: h('input', { type: 'date', name: 'follow_up_at', 'aria-label': 'Follow-up date' }) };
  }
  const chips = h('div', { class: 'chips', role: 'radiogroup', 'aria-label': 'Disposition' }, app.dispositions.map((d) => h('button', {
    type: 'button', role: 'radio', class: `chip ${entry.wrap.disposition === d.id ? 'selected' : ''}`,
    'aria-checked': entry.wrap.disposition === d.id ? 'true' : 'false', dataset: { disposition: d.id },
    onclick: () => { entry.wrap.disposition = d.id; renderPopup(entry); },
  }, d.label)));
  const save = h('button', { class: 'btn btn-primary', type: 'button', onclick: () => saveWrapup(entry, save) }, 'Save');
  return h('div', { class: 'wrapup' },
    h('h3', {}, 'How did it go?'), chips,
    h('div', { class: 'wrapup-row' }, h('label', {}, 'Follow up on ', entry.wrap.date), save));
}

async function saveWrapup(entry, button) {
  button.disabled = true;
  const body = { notes: entry.notes.value, disposition: entry.wrap.disposition, follow_up_at: entry.wrap.date.value || null };
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try {
      await api(`/panel/api/calls/${encodeURIComponent(entry.call.id)}/wrapup`, body);
      entry.saved = true;
      renderPopup(entry);
      return;
    } catch (e) {
      if (e.status === 404 && attempt < 4) { // the call log write may be a moment behind
        await new Promise((r) => window.setTimeout(r, 400));
        continue;
      }
      toast(e.message, 'error');
      button.disabled = false;
      return;
    }
  }
}

function closePopup(entry) {
  if (entry.el) entry.el.remove();
  app.calls.delete(entry.call.id);
  $('live-empty').hidden = app.calls.size > 0;
}

// -- history, missed, follow-ups ----------------------------------------------------------------

function callRows(table, items, { missed = false } = {}) {
  const head = missed
    ? ['When', 'Number', 'Caller ID', 'Rang', '']
    : ['When', 'Number', 'Outcome', 'Duration', 'Agent', 'Notes', 'Recording'];
  clear(table).append(h('thead', {}, h('tr', {}, head.map((t) => h('th', {}, t)))));
  const body = h('tbody', {});
  if (!items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, missed ? 'No missed calls. Nice.' : 'No calls match.')));
  for (const c of items) {
    const number = h('td', { class: 'num' }, h('span', {}, c.number || c.caller || '—'), ' ', callButton(c.number, missed ? 'Call back' : 'Call'));
    if (missed) {
      body.append(h('tr', { dataset: { callId: c.id } }, h('td', {}, when(c.started_at)), number,
        h('td', {}, c.caller_name || ''), h('td', {}, duration(c.ring_seconds)), h('td', {})));
      continue;
    }
    const recs = (c.recordings || []).map((_, i) => h('audio', { controls: true, preload: 'none', src: `/panel/recordings/${encodeURIComponent(c.id)}/${i}` }));
    body.append(h('tr', { dataset: { callId: c.id } },
      h('td', {}, when(c.started_at), h('div', { class: 'muted small' }, c.direction)),
      number, h('td', {}, outcomeBadge(c.outcome)), h('td', {}, duration(c.talk_seconds)),
      h('td', {}, c.answered_by || (c.agents_rang || []).join(', ')),
      h('td', { class: 'notes-cell' }, c.disposition ? h('span', { class: 'badge disp' }, (app.dispositions.find((d) => d.id === c.disposition) || {}).label || c.disposition) : null, ' ', c.notes || ''),
      h('td', {}, recs.length ? recs : h('span', { class: 'muted' }, '—'))));
  }
  table.append(body);
}

async function loadHistory() {
  const form = $('history-filters');
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, String(v));
  try {
    const doc = await api(`/panel/api/calls?${q}`);
    callRows($('history-table'), doc.items);
  } catch (e) { toast(e.message, 'error'); }
}

async function loadMissed() {
  try {
    const doc = await api('/panel/api/calls?missed=1');
    callRows($('missed-table'), doc.items, { missed: true });
    const count = $('missed-count');
    count.textContent = String(doc.items.length);
    count.hidden = !doc.items.length;
  } catch (e) { toast(e.message, 'error'); }
}

async function loadFollowups() {
  try {
    const doc = await api('/panel/api/followups');
    const list = clear($('followup-list'));
    if (!doc.items.length) list.append(h('li', { class: 'muted' }, 'No follow-ups. Your worklist is clear.'));
    const now = Date.now() / 1000;
    for (const f of doc.items) {
      list.append(h('li', { class: `followup ${f.due_at < now ? 'due' : ''}` },
        h('div', {}, h('strong', {}, f.title), h('div', { class: 'muted' }, f.person || '', ' · due ', when(f.due_at))),
        callButton(f.number)));
    }
    const count = $('followup-count');
    const due = doc.items.filter((f) => f.due_at < now).length;
    count.textContent = String(due);
    count.hidden = !due;
  } catch (e) { toast(e.message, 'error'); }
}

// -- supervisor board ---------------------------------------------------------------------------

async function loadBoard() {
  if (!app.me || app.me.role === 'agent') return;
  try {
    const doc = await api('/panel/api/board');
    app.board.agents = new Map(doc.agents.map((a) => [a.username, a]));
    app.board.calls = new Map(doc.calls.map((c) => [c.id, c]));
    renderBoard();
  } catch (e) { toast(e.message, 'error'); }
}

function renderBoard() {
  const grid = clear($('board-agents'));
  for (const a of app.board.agents.values()) {
    grid.append(h('div', { class: `agent-tile st-${a.status}`, dataset: { agent: a.username } },
      h('div', { class: 'avatar small' }, initials(a.display_name)),
      h('div', {}, h('strong', {}, a.display_name), h('div', { class: 'muted small' }, (a.extensions || []).join(', ') || 'no extension')),
      h('span', { class: 'st-label' }, PRESENCE[a.status] || a.status, a.reason ? ` · ${a.reason}` : '')));
  }
  const table = clear($('board-calls'));
  table.append(h('thead', {}, h('tr', {}, ['Started', 'Number', 'Caller ID', 'State', 'Agent'].map((t) => h('th', {}, t)))));
  const body = h('tbody', {});
  if (!app.board.calls.size) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted center' }, 'No calls right now.')));
  for (const c of app.board.calls.values()) {
    body.append(h('tr', {}, h('td', {}, when(c.started_at)), h('td', {}, c.number || ''), h('td', {}, c.caller_name || ''),
      h('td', {}, h('span', { class: `badge state-${c.state}` }, c.state)),
      h('td', {}, c.answered_agent || c.answered_by || (c.ringing || []).join(', '))));
  }
  table.append(body);
}

// -- presence -----------------------------------------------------------------------------------

function showPresence(p) {
  if (!p) return;
  $('presence-dot').className = `dot st-${p.status}`;
  $('presence').dataset.status = p.status;
  $('presence-select').value = p.status === 'paused' ? 'paused' : 'available';
  $('presence-note').textContent = p.status === 'on_call' ? 'On a call' : p.reason || '';
}

// -- live messages ------------------------------------------------------------------------------

function onMessage(msg) {
  const d = msg.data || {};
  switch (msg.type) {
    case 'call.ringing':
    case 'call.answered':
    case 'call.ended': {
      const call = { ...d.call };
      if (msg.type === 'call.ended') call.wrapup = d.wrapup || [];
      const mine = app.me && ((call.agents || []).includes(app.me.username) || call.answered_agent === app.me.username || (call.wrapup || []).includes(app.me.username));
      if (app.me && app.me.role !== 'agent') {
        if (call.state === 'ended') app.board.calls.delete(call.id);
        else app.board.calls.set(call.id, { ...(app.board.calls.get(call.id) || {}), ...call });
        if (app.view === 'board') renderBoard();
      }
      if (mine || app.calls.has(call.id)) showCall(call, d.card);
      if (msg.type === 'call.ended') {
        if (app.view === 'history') loadHistory();
        if (call.outcome !== 'answered') loadMissed();
      }
      break;
    }
    case 'presence':
      if (app.me && d.username === app.me.username) showPresence(d);
      if (app.me && app.me.role !== 'agent') {
        app.board.agents.set(d.username, d);
        if (app.view === 'board') renderBoard();
      }
      break;
    case 'clicktocall.progress':
      showProgress(d);
      break;
    case 'followup.due':
      toast(`Follow-up due: ${d.title}${d.person ? ` — ${d.person}` : ''}`, 'info', 10000);
      loadFollowups();
      break;
    default:
      break;
  }
}

async function refresh() {
  try {
    const s = await api('/panel/api/state');
    app.me = s.me;
    app.dispositions = s.dispositions;
    renderMe();
    showPresence(s.presence);
    for (const { call, card } of s.calls) showCall(call, card);
    for (const p of s.clicktocall) showProgress(p);
    loadMissed();
    loadFollowups();
    if (app.view === 'history') loadHistory();
    loadBoard();
  } catch (e) { toast(e.message, 'error'); }
}

function renderMe() {
  const me = app.me;
  clear($('me')).append(h('div', { class: 'avatar small' }, initials(me.display_name)),
    h('div', {}, h('strong', {}, me.display_name), h('div', { class: 'muted small' }, `${me.role} · ext ${(me.extensions || []).join(', ') || '—'}`)));
  $('nav-board').hidden = me.role === 'agent';
  document.body.dataset.user = me.username;
}

function show(view) {
  app.view = view;
  for (const b of document.querySelectorAll('.nav-item')) b.classList.toggle('active', b.dataset.view === view);
  for (const v of ['live', 'history', 'missed', 'followups', 'board']) $(`view-${v}`).hidden = v !== view;
  if (view === 'history') loadHistory();
  if (view === 'missed') loadMissed();
  if (view === 'followups') loadFollowups();
  if (view === 'board') loadBoard();
}

function init() {
  for (const b of document.querySelectorAll('.nav-item')) b.addEventListener('click', () => show(b.dataset.view));
  $('history-filters').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(); });
  $('dialer').addEventListener('submit', (e) => {
    e.preventDefault();
    const number = $('dial-number').value.trim();
    if (number) clickToCall(number);
  });
  $('presence-select').addEventListener('change', async (e) => {
    const status = e.target.value;
    const reason = status === 'paused' ? 'Break' : '';
    try {
      const p = await api('/panel/api/presence', { status, reason });
      showPresence(p);
      if (p.pbx_warning) toast(p.pbx_warning, 'error');
    } catch (err) { toast(err.message, 'error'); }
  });
  $('logout').addEventListener('click', async () => {
    await api('/panel/api/logout', {}).catch(() => null);
    window.location.assign('/panel/login');
  });
  const socket = new LiveSocket({
    onMessage,
    onRefresh: refresh,
    onStatus: (s) => {
      const el = $('link-state');
      el.dataset.state = s;
      el.textContent = s === 'live' ? 'Live' : s === 'connecting' ? 'Connecting…' : 'Reconnecting…';
      document.body.dataset.socket = s;
    },
  });
  socket.start();
}

init();

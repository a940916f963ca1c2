// The list views: call history, missed calls, follow-ups and (supervisors) the live board.
// Each list is bounded (the server pages at 50 rows; the board shows live calls only) and is
// loaded when its view is opened, not on every call event: a closed view costs nothing.
import { api, clear, h, initials, srOnly } from './dom.js';
import { duration, relative, t, tId, when } from './i18n.js';
import { callButton, errorText, toast } from './ui.js';

const MAX_ROWS = 50;

function outcomeBadge(outcome) {
  return h('span', { class: `badge outcome-${outcome || 'unknown'}` }, outcome ? tId('outcome', outcome, outcome) : '—');
}

// The outside party as people read it: the server's formatted number ("+34 911 23 45 67").
function shownNumber(c) {
  return c.number_display || c.number || c.caller || '';
}

// A table body of call rows; `append` adds rows under the ones there (the "More" button).
export function callRows(table, items, dispositions, { missed = false, append = false } = {}) {
  if (append && table.tBodies.length) {
    const body = table.tBodies[0];
    for (const c of items.slice(0, MAX_ROWS)) body.append(callRow(c, dispositions, missed));
    return;
  }
  const head = missed
    ? ['list.when', 'list.number', 'list.caller_id', 'list.rang', 'list.actions']
    : ['list.when', 'list.number', 'list.outcome', 'list.duration', 'list.agent', 'list.notes', 'list.recording'];
  clear(table).append(h('caption', { class: 'sr-only' }, t(missed ? 'nav.missed' : 'nav.history')),
    h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))));
  const body = h('tbody', {});
  if (!items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t(missed ? 'missed.none' : 'history.none'))));
  for (const c of items.slice(0, MAX_ROWS)) body.append(callRow(c, dispositions, missed));
  table.append(body);
}

function callRow(c, dispositions, missed) {
  const who = c.contact_name || c.caller_name || shownNumber(c);
  const dial = c.number_e164 || c.number;
  const number = h('td', { class: 'num' },
    c.contact_name ? h('strong', { class: 'contact-name' }, c.contact_name) : '',
    c.contact_name ? h('br', {}) : '',
    h('span', { class: 'number-display' }, shownNumber(c) || '—'));
  if (missed) {
    return h('tr', { dataset: { callId: c.id } }, h('td', {}, when(c.started_at)), number,
      h('td', {}, c.caller_name || ''), h('td', {}, duration(c.ring_seconds)),
      h('td', {}, callButton(dial, who, 'action.call_back')));
  }
  number.append(' ', callButton(dial, who));
  const recs = (c.recordings || []).map((_, i, all) => h('audio', {
    controls: true, preload: 'none', src: `/panel/recordings/${encodeURIComponent(c.id)}/${i}`,
    'aria-label': t('history.recording_of', { n: i + 1, count: all.length, who: who || '—', when: when(c.started_at) }),
  }));
  const disp = c.disposition ? tId('disposition', c.disposition, (dispositions().find((d) => d.id === c.disposition) || {}).label) : '';
  const agent = c.answered_by_name || (c.agent_names || []).join(', ') || c.answered_by || (c.agents_rang || []).join(', ');
  return h('tr', { dataset: { callId: c.id } },
    h('td', {}, when(c.started_at), h('div', { class: 'muted small' }, tId('direction', c.direction, c.direction))),
    number, h('td', {}, outcomeBadge(c.outcome)), h('td', {}, duration(c.talk_seconds)),
    h('td', {}, agent),
    h('td', { class: 'notes-cell' }, disp ? h('span', { class: 'badge disp' }, disp) : '', ' ', c.notes || ''),
    h('td', {}, recs.length ? recs : h('span', { class: 'muted' }, '—')));
}

// History pages: the first load replaces the table, "More" appends the next page (the server's
// next_cursor, with the same filters). The page holds at most HISTORY_PAGES pages.
const HISTORY_PAGES = 10;
let historyCursor = null;
let historyQuery = '';
let historyPages = 0;

export async function loadHistory(dispositions, { more = false } = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById('history-filters')).entries()) if (v) q.set(k, String(v));
  if (more) {
    if (!historyCursor) return;
    q.set('cursor', historyCursor);
  }
  const button = document.getElementById('history-more');
  try {
    button.disabled = true;
    const doc = await api(`/panel/api/calls?${q}`);
    if (!more) historyQuery = q.toString();
    historyPages = more ? historyPages + 1 : 1;
    callRows(document.getElementById('history-table'), doc.items, dispositions, { append: more });
    historyCursor = doc.next_cursor || null;
    button.hidden = !historyCursor || historyPages >= HISTORY_PAGES;
    if (more && doc.items.length) {
      // focus stays on the list: the first new row's call button, else the button
      const rows = document.getElementById('history-table').tBodies[0].rows;
      const first = rows[rows.length - doc.items.length];
      const target = first && first.querySelector('button');
      if (target) target.focus();
    }
  } catch (e) { toast(errorText(e), 'error'); } finally { button.disabled = false; }
}

export function historyState() {
  return { cursor: historyCursor, query: historyQuery, pages: historyPages };
}

export function showCount(el, n, key) {
  el.hidden = !n;
  // the number is seen; its meaning is heard ("3 missed calls"), not carried by a red dot
  clear(el).append(h('span', { 'aria-hidden': 'true' }, String(n)), srOnly(t(key, { count: n })));
}

export async function loadMissed(dispositions) {
  try {
    const doc = await api('/panel/api/calls?missed=1');
    callRows(document.getElementById('missed-table'), doc.items, dispositions, { missed: true });
    showCount(document.getElementById('missed-count'), doc.items.length, 'count.missed');
  } catch (e) { toast(errorText(e), 'error'); }
}

export async function loadFollowups() {
  try {
    const doc = await api('/panel/api/followups');
    const list = clear(document.getElementById('followup-list'));
    if (!doc.items.length) list.append(h('li', { class: 'muted' }, t('followups.none')));
    const now = Date.now() / 1000;
    for (const f of doc.items.slice(0, MAX_ROWS)) {
      const overdue = f.due_at < now;
      list.append(h('li', { class: `followup ${overdue ? 'due' : ''}` },
        h('div', {},
          h('strong', {}, f.title),
          h('div', { class: 'muted' }, overdue ? h('span', { class: 'badge overdue' }, t('followups.overdue')) : '', ' ',
            f.person || '', ' · ', t('followups.due', { when: when(f.due_at) }), ' ', h('span', { class: 'small' }, `(${relative(f.due_at)})`))),
        callButton(f.number, f.person || f.number)));
    }
    showCount(document.getElementById('followup-count'), doc.items.filter((f) => f.due_at < now).length, 'count.overdue');
  } catch (e) { toast(errorText(e), 'error'); }
}

export function renderBoard(board) {
  const grid = clear(document.getElementById('board-agents'));
  for (const a of board.agents.values()) {
    grid.append(h('div', { class: `agent-tile st-${a.status}`, dataset: { agent: a.username } },
      h('div', { class: 'avatar small', 'aria-hidden': 'true' }, initials(a.display_name)),
      h('div', {}, h('strong', {}, a.display_name), h('div', { class: 'muted small' }, (a.extensions || []).join(', ') || t('board.no_extension'))),
      h('span', { class: 'st-label' }, tId('presence', a.status, a.status), a.reason ? ` · ${a.reason}` : '')));
  }
  const table = clear(document.getElementById('board-calls'));
  table.append(h('thead', {}, h('tr', {}, ['list.started', 'list.number', 'list.caller_id', 'list.state', 'list.agent'].map((k) => h('th', { scope: 'col' }, t(k))))));
  const body = h('tbody', {});
  if (!board.calls.size) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted center' }, t('board.no_calls'))));
  for (const c of board.calls.values()) {
    body.append(h('tr', {}, h('td', {}, when(c.started_at)), h('td', {}, c.number || ''), h('td', {}, c.caller_name || ''),
      h('td', {}, h('span', { class: `badge state-${c.state}` }, tId('call_state', c.state, c.state))),
      h('td', {}, c.answered_agent || c.answered_by || (c.ringing || []).join(', '))));
  }
  table.append(body);
}

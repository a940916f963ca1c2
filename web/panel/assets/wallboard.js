// The supervisors' wallboard: queues (waiting, longest wait, service level, averages), every
// agent's state with the time in it, and the calls in progress; Listen / Whisper / Barge per
// agent on a call. The server pushes a new document when something changes (at most once a
// second); the clocks (time in state, longest wait, call durations) tick here, from the
// server's `now`, so a wallboard on a TV keeps moving without a request a second.
//
// TV mode (a toggle, or /panel/#wallboard?tv=1): large type, no sidebar, top bar or buttons
// (not even its own: a wall screen has nothing to press); Escape leaves it.
//
// The `wallboard` messages are the latest state, not events: they carry no sequence number and
// are not replayed; a tab that (re)connects is sent one fresh document.
import { api, clear, h } from './dom.js';
import { duration, number, t, tId } from './i18n.js';
import { registerView } from './views.js';
import { announce, errorText, toast } from './ui.js';

const MAX_ROWS = 200; // a wallboard is one screen; beyond this the lists are cut (and say so)
const STATE_MARK = { available: '●', ringing: '◔', on_call: '☎', after_call_work: '✎', paused: 'Ⅱ', signed_out: '○' };
const SPY_MODES = ['listen', 'whisper', 'barge'];

export function installWallboard(app) {
  const wb = { doc: null, offset: 0, timer: null, tv: false };
  let section = null;

  const serverNow = () => Date.now() / 1000 + wb.offset;

  async function load() {
    try {
      const [doc, board] = await Promise.all([api('/panel/api/wallboard'), api('/panel/api/board').catch(() => null)]);
      if (board) app.board.agents = new Map(board.agents.map((a) => [a.username, a]));
      receive(doc);
    } catch (e) { toast(errorText(e), 'error'); }
  }

  function receive(doc) {
    wb.doc = doc;
    wb.offset = Number(doc.now) - Date.now() / 1000;
    if (app.view === 'wallboard') render();
  }

  function setTv(on) {
    wb.tv = on;
    document.body.classList.toggle('tv', on);
    if (app.view === 'wallboard') render();
    if (!on && section) {
      const b = section.querySelector('#wallboard-tv');
      if (b) b.focus();
    }
  }

  // who is listened to, from the presence documents (the wallboard has no spy field)
  function spyOf(username) {
    const a = app.board.agents.get(username);
    return a && a.spy ? a.spy : null;
  }

  function nameOf(username) {
    const a = app.board.agents.get(username);
    return (a && a.display_name) || username;
  }

  async function spy(agent, mode, name) {
    try {
      await api('/panel/api/spy', { agent, mode });
      announce(t('spy.started', { mode: tId('spy_mode', mode, mode), name }));
      toast(t('spy.started', { mode: tId('spy_mode', mode, mode), name }), 'info');
    } catch (e) { toast(errorText(e), 'error'); }
  }

  function since(epoch, empty = '—') {
    // the text is filled by tick(); data-since keeps the server's epoch
    if (epoch === null || epoch === undefined) return h('span', {}, empty);
    return h('span', { class: 'ticking', dataset: { since: String(epoch) } }, duration(serverNow() - Number(epoch)));
  }

  function tick() {
    if (!section || app.view !== 'wallboard') return;
    const now = serverNow();
    for (const el of section.querySelectorAll('[data-since]')) {
      const text = duration(now - Number(el.dataset.since));
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function percent(v) {
    return v === null || v === undefined ? '—' : number(v / 100, { style: 'percent', maximumFractionDigits: 1 });
  }

  function seconds(v) {
    return v === null || v === undefined ? '—' : duration(v);
  }

  function queuesTable(queues) {
    const head = ['wallboard.queue', 'wallboard.waiting', 'wallboard.longest_wait', 'wallboard.service_level', 'wallboard.answered', 'wallboard.abandoned', 'wallboard.asa', 'wallboard.aht', 'wallboard.agents_free'];
    const body = h('tbody', {});
    if (!queues.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('wallboard.no_queues'))));
    for (const q of queues.slice(0, MAX_ROWS)) {
      body.append(h('tr', { dataset: { queue: q.queue } },
        h('th', { scope: 'row' }, q.queue, wb.doc && new Set(wb.doc.queues.map((x) => x.pbx)).size > 1 ? h('span', { class: 'muted small' }, ` · ${q.pbx}`) : ''),
        h('td', { class: `figure ${q.waiting ? 'is-waiting' : ''}`, dataset: { figure: 'waiting' } }, number(q.waiting)),
        h('td', { dataset: { figure: 'longest_wait' } }, q.waiting && q.longest_wait_since ? since(q.longest_wait_since) : '—'),
        h('td', { dataset: { figure: 'service_level' } }, percent(q.service_level), h('div', { class: 'muted small' }, t('wallboard.within', { s: number(q.service_level_seconds) }))),
        h('td', { dataset: { figure: 'answered' } }, number(q.answered)),
        h('td', { dataset: { figure: 'abandoned' } }, number(q.abandoned), q.abandoned_short ? h('div', { class: 'muted small' }, t('wallboard.short', { n: q.abandoned_short })) : ''),
        h('td', { dataset: { figure: 'asa' } }, seconds(q.average_speed_of_answer)),
        h('td', { dataset: { figure: 'aht' } }, seconds(q.average_handle_time)),
        h('td', { dataset: { figure: 'agents' } }, t('wallboard.agents_summary', { available: q.available, on_call: q.on_call, paused: q.paused, members: q.members }))));
    }
    return h('table', { class: 'calls wallboard-queues', id: 'wallboard-queues' },
      h('caption', { class: 'sr-only' }, t('wallboard.queues')),
      h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), body);
  }

  function stateCell(a) {
    const label = tId('wb_state', a.state, a.state);
    const reason = a.state === 'paused' && a.reason ? ` · ${tId('pause_reason', a.reason, a.reason)}` : '';
    return h('span', { class: `wb-state st-${a.state}` }, h('span', { 'aria-hidden': 'true' }, `${STATE_MARK[a.state] || '•'} `), label, reason);
  }

  function agentsTable(agents) {
    const head = ['wallboard.agent', 'wallboard.state', 'wallboard.time_in_state', 'wallboard.queues_of', ...(wb.tv ? [] : ['list.actions'])];
    const body = h('tbody', {});
    if (!agents.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('wallboard.no_agents'))));
    for (const a of agents.slice(0, MAX_ROWS)) {
      const name = a.display_name || a.username || (a.extensions || []).join(', ');
      const watched = a.username ? spyOf(a.username) : null;
      const row = h('tr', { dataset: { agent: a.username || '', state: a.state } },
        h('th', { scope: 'row' }, name, h('div', { class: 'muted small' }, (a.extensions || []).join(', '), a.signed_in ? '' : ` · ${t('wallboard.not_signed_in')}`)),
        h('td', {}, stateCell(a), watched ? h('div', { class: 'spy-badge' }, t('spy.listened_by', { by: nameOf(watched.by), mode: tId('spy_mode', watched.mode, watched.mode) })) : ''),
        h('td', {}, a.since ? since(a.since) : '—'),
        h('td', {}, (a.queues || []).join(', ') || '—'));
      if (!wb.tv) {
        const canSpy = a.state === 'on_call' && a.username && a.signed_in && a.username !== (app.me && app.me.username);
        row.append(h('td', { class: 'spy-actions' }, canSpy
          ? h('div', { role: 'group', 'aria-label': t('spy.group', { name }) }, SPY_MODES.map((mode) => h('button', {
            type: 'button', class: 'btn btn-secondary btn-small', dataset: { spy: mode },
            'aria-label': t('spy.action_named', { mode: tId('spy_mode', mode, mode), name }),
            onclick: () => spy(a.username, mode, name),
          }, tId('spy_mode', mode, mode))))
          : h('span', { class: 'muted' }, '—')));
      }
      body.append(row);
    }
    return h('table', { class: 'calls wallboard-agents', id: 'wallboard-agents' },
      h('caption', { class: 'sr-only' }, t('wallboard.agents')),
      h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), body);
  }

  function callsTable(calls) {
    const head = ['list.number', 'list.caller_id', 'list.state', 'list.agent', 'wallboard.queue', 'list.duration'];
    const body = h('tbody', {});
    if (!calls.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('board.no_calls'))));
    for (const c of calls.slice(0, MAX_ROWS)) {
      body.append(h('tr', { dataset: { callId: c.id } },
        h('td', {}, c.number_display || c.number || c.caller || '—'), h('td', {}, c.caller_name || ''),
        h('td', {}, h('span', { class: `badge state-${c.state}` }, tId('call_state', c.state, c.state))),
        h('td', {}, (c.agent_names || []).join(', ') || c.answered_by || (c.ringing || []).join(', ')),
        h('td', {}, c.queue || '—'),
        h('td', {}, since(c.answered_at || c.started_at))));
    }
    return h('table', { class: 'calls wallboard-calls', id: 'wallboard-calls' },
      h('caption', { class: 'sr-only' }, t('wallboard.calls')),
      h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), body);
  }

  function render() {
    if (!section) return;
    const doc = wb.doc || { queues: [], agents: [], calls: [] };
    const tvButton = wb.tv ? '' : h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'wallboard-tv', 'aria-pressed': wb.tv ? 'true' : 'false', onclick: () => setTv(!wb.tv) }, t(wb.tv ? 'wallboard.tv_exit' : 'wallboard.tv'));
    const focusedId = section.contains(document.activeElement) ? document.activeElement.id || null : null;
    const focusedSpy = section.contains(document.activeElement) && document.activeElement.dataset.spy
      ? [document.activeElement.closest('tr').dataset.agent, document.activeElement.dataset.spy] : null;
    clear(section).append(
      h('div', { class: 'wallboard-bar' },
        wb.tv ? h('h2', { class: 'tv-title' }, t('nav.wallboard')) : '',
        h('span', { class: 'muted small' }, t('wallboard.updated_live')),
        wb.tv ? h('span', { class: 'muted small' }, t('wallboard.tv_hint')) : '', tvButton),
      h('h2', { class: 'section-title' }, t('wallboard.queues')), h('div', { class: 'table-wrap' }, queuesTable(doc.queues || [])),
      h('h2', { class: 'section-title' }, t('wallboard.agents')), h('div', { class: 'table-wrap' }, agentsTable(doc.agents || [])),
      h('h2', { class: 'section-title' }, t('wallboard.calls')), h('div', { class: 'table-wrap' }, callsTable(doc.calls || [])),
      (doc.agents || []).length > MAX_ROWS ? h('p', { class: 'muted' }, t('wallboard.cut', { n: MAX_ROWS })) : '');
    // a push must not pull focus from under the supervisor's hands
    if (focusedId) {
      const el = document.getElementById(focusedId);
      if (el) el.focus();
    } else if (focusedSpy) {
      const el = section.querySelector(`tr[data-agent="${CSS.escape(focusedSpy[0])}"] [data-spy="${focusedSpy[1]}"]`);
      if (el) el.focus();
    }
  }

  section = registerView('wallboard', {
    titleKey: 'nav.wallboard',
    roles: ['supervisor', 'admin'],
    onShow: () => {
      const tv = app.hashParams && app.hashParams.get('tv') === '1';
      if (tv !== wb.tv) setTv(tv);
      render();
      load();
      if (!wb.timer) wb.timer = window.setInterval(tick, 1000);
    },
    onMessage: (msg) => {
      if (msg.type === 'wallboard') receive(msg.data);
      else if (msg.type === 'presence' && app.view === 'wallboard' && wb.doc) {
        // the spy badge follows the presence documents
        window.clearTimeout(wb.presenceTimer);
        wb.presenceTimer = window.setTimeout(render, 200);
      }
    },
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && wb.tv) {
      ev.preventDefault();
      if (window.location.hash.includes('tv=1')) window.history.replaceState(null, '', '#wallboard');
      app.hashParams = new URLSearchParams();
      setTv(false);
    }
  });
  // leaving the view leaves TV mode too
  app.listeners.push(() => { if (wb.tv && app.view !== 'wallboard') setTv(false); });
  wb.render = render;
  return wb;
}

// The agent panel: boots the language and the user's settings, runs the live desk, the list
// views, presence, click-to-call, keyboard shortcuts and (for supervisors) the live board.
// Views live in a registry (views.js); hooks for later views: registerView(), app.onMessage.
import { Desk } from './desk.js';
import { consultationChanged } from './callcontrols.js';
import { api, clear, h, initials, srOnly } from './dom.js';
import { language, loadLanguage, t, tId, translatePage } from './i18n.js';
import { alerts, askPermission, notifyRinging, onFirstGesture, ringWhile } from './alerts.js';
import { historyState, loadFollowups, loadHistory, loadMissed, renderBoard, showCount } from './lists.js';
import { LiveSocket } from './socket.js';
import { errorText, onDial, toast } from './ui.js';
import { registerView, views } from './views.js';
import { clockText } from './desk.js';
import { installWallboard } from './wallboard.js';
import { installWorklist } from './worklist.js';
import { installRecords } from './records.js';
import { installCampaigns } from './campaigns.js';
import { installMailbox } from './mailbox.js';
import { installReports } from './reports.js';

const $ = (id) => document.getElementById(id);
export const app = {
  me: null,
  dispositions: [],
  prefs: { language: null, notifications: true, ring_sound: true, theme: 'auto' },
  languages: ['en', 'es'],
  view: 'live',
  board: { agents: new Map(), calls: new Map() },
  presence: null,
  missed: 0,
  desk: null,
  listeners: [], // later modules: app.listeners.push((msg) => ...) to follow live messages
  afterCallSeconds: 30,
};
const dispositions = () => app.dispositions;

// -- click-to-call ------------------------------------------------------------------------------

const C2C_STEPS = ['calling_agent', 'calling_customer', 'connected'];
let lastProgress = null;

async function clickToCall(number) {
  showProgress({ state: 'starting', number, message: t('c2c.starting') });
  try {
    showProgress(await api('/panel/api/originate', { number }));
  } catch (e) {
    showProgress({ state: 'failed', number, reason: e.id || 'failed', message: errorText(e) });
  }
}
onDial(clickToCall);

function progressMessage(p) {
  if (p.state === 'failed') return tId('c2c', p.reason || 'failed', p.message);
  if (p.state === 'starting') return p.message;
  return tId('c2c', p.state, p.message);
}

function showProgress(p) {
  lastProgress = p;
  const box = $('c2c');
  box.hidden = false;
  box.dataset.state = p.state;
  box.dataset.reason = p.reason || '';
  const reached = C2C_STEPS.indexOf(p.state);
  // each step says its state in words and a symbol, not only in colour
  const steps = h('ol', { class: 'c2c-steps' }, C2C_STEPS.map((s, i) => {
    const state = p.state === 'failed' ? (i === 0 ? 'failed' : 'todo') : (reached > i || p.state === 'ended' ? 'done' : reached === i ? 'current' : 'todo');
    const mark = { done: '✓', current: '●', failed: '✕', todo: '○' }[state];
    return h('li', { class: state, 'aria-current': state === 'current' ? 'step' : null },
      h('span', { 'aria-hidden': 'true' }, `${mark} `), t(`c2c.step_${s}`), srOnly(` (${t(`c2c.step_state_${state}`)})`));
  }));
  const title = p.state === 'failed' ? t('c2c.not_connected') : p.state === 'ended' ? t('c2c.finished') : t('c2c.title');
  const hadFocus = box.contains(document.activeElement);
  const dismiss = h('button', { class: 'btn btn-ghost btn-small', type: 'button', id: 'c2c-dismiss', onclick: () => dismissProgress() }, t('action.dismiss'));
  clear(box).append(
    h('div', { class: 'c2c-head' }, h('h2', { id: 'c2c-title', class: 'c2c-title' }, title), h('span', { class: 'c2c-number' }, p.number || ''), dismiss),
    steps,
    h('p', { class: `c2c-message ${p.state === 'failed' ? 'is-error' : ''}`, id: 'c2c-message', role: p.state === 'failed' ? 'alert' : 'status' }, progressMessage(p)),
  );
  if (hadFocus) dismiss.focus();
}

function dismissProgress() {
  const box = $('c2c');
  const hadFocus = box.contains(document.activeElement);
  box.hidden = true;
  lastProgress = null;
  if (hadFocus) $('dial-number').focus();
}

// -- presence: a menu button; arrow keys move, Enter or a click commits ------------------------

function showPresence(p) {
  if (!p) return;
  app.presence = p;
  $('presence-dot').className = `dot st-${p.status}`;
  $('presence').dataset.status = p.status;
  const label = tId('presence', p.status, p.status);
  clear($('presence-button')).append(h('span', {}, label), h('span', { 'aria-hidden': 'true' }, ' ▾'));
  $('presence-button').setAttribute('aria-label', t('presence.button', { status: label }));
  for (const item of $('presence-menu').children) item.setAttribute('aria-checked', String(item.dataset.status === (p.status === 'paused' ? 'paused' : 'available')));
  const notes = [p.status === 'on_call' ? t('presence.on_call') : p.status === 'after_call_work' ? t('acw.note') : p.reason ? tId('pause_reason', p.reason, p.reason) : ''];
  // a pause chosen during a call waits for the call's end: said, so the agent knows it took
  if (p.pending) notes.push(t('presence.pending', { status: tId('presence', p.pending.status, p.pending.status) }));
  $('presence-note').textContent = notes.filter(Boolean).join(' · ');
  const spy = $('spy-note');
  spy.hidden = !p.spy;
  spy.textContent = p.spy ? t('spy.agent_note', { mode: tId('spy_mode', p.spy.mode, p.spy.mode) }) : '';
  if (p.status === 'after_call_work' && p.until && p.after_call_call) {
    if (!app.desk.acw || app.desk.acw.callId !== p.after_call_call) {
      // a reloaded tab: the server's deadline, never longer than the configured time
      const left = Math.min(Number(p.until) - Date.now() / 1000, app.afterCallSeconds);
      app.desk.setAfterCall(p.after_call_call, Date.now() + Math.max(0, left) * 1000);
    }
  } else if (p.status !== 'after_call_work' && app.desk.acw) {
    app.desk.setAfterCall(null);
  }
  tickAfterCall();
}

// The top bar's countdown of after-call work, and the wrap-up card's, once a second.
function tickAfterCall() {
  const el = $('acw-timer');
  const acw = app.desk && app.desk.acw;
  el.hidden = !acw;
  if (acw) {
    const left = Math.max(0, Math.round((acw.deadline - Date.now()) / 1000));
    const text = t('acw.timer', { time: clockText(left) });
    if (el.textContent !== text) el.textContent = text;
  }
  if (app.desk) app.desk.tick();
}

function onAfterCall(d) {
  if (d.state === 'started') app.desk.setAfterCall(d.call_id, Date.now() + Number(d.seconds || 0) * 1000);
  else if (d.state === 'ended' && (!app.desk.acw || app.desk.acw.callId === d.call_id)) app.desk.setAfterCall(null);
  tickAfterCall();
}

function openPresence() {
  const menu = $('presence-menu');
  menu.hidden = false;
  $('presence-button').setAttribute('aria-expanded', 'true');
  const items = [...menu.children];
  (items.find((i) => i.getAttribute('aria-checked') === 'true') || items[0]).focus();
}

function closePresence(refocus) {
  $('presence-menu').hidden = true;
  $('presence-button').setAttribute('aria-expanded', 'false');
  if (refocus) $('presence-button').focus();
}

async function commitPresence(status) {
  closePresence(true);
  try {
    const p = await api('/panel/api/presence', { status, reason: status === 'paused' ? 'Break' : '' });
    showPresence(p);
    if (p.pbx_warning) toast(t('presence.pbx_warning'), 'error');
  } catch (err) { toast(errorText(err), 'error'); }
}

function presenceKeys(ev) {
  const items = [...$('presence-menu').children];
  const i = items.indexOf(document.activeElement);
  if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
    ev.preventDefault();
    items[(i + (ev.key === 'ArrowDown' ? 1 : -1) + items.length) % items.length].focus();
  } else if (ev.key === 'Enter' || ev.key === ' ') {
    ev.preventDefault();
    if (i >= 0) commitPresence(items[i].dataset.status);
  } else if (ev.key === 'Escape' || ev.key === 'Tab') {
    if (ev.key === 'Escape') ev.preventDefault();
    closePresence(ev.key === 'Escape');
  }
}

// -- live messages ------------------------------------------------------------------------------

const later = new Map(); // debounced reloads: many events, one request
function debounce(key, fn, ms = 800) {
  if (later.has(key)) return;
  later.set(key, window.setTimeout(() => { later.delete(key); fn(); }, ms));
}

function onMessage(msg) {
  const d = msg.data || {};
  const u = app.me && app.me.username;
  switch (msg.type) {
    case 'call.ringing':
    case 'call.answered':
    case 'call.ended': {
      const call = { ...d.call };
      if (msg.type === 'call.ended') call.wrapup = d.wrapup || [];
      const mine = Boolean(u) && ((call.agents || []).includes(u) || call.answered_agent === u || (call.wrapup || []).includes(u));
      if (app.me && app.me.role !== 'agent') {
        if (call.state === 'ended') app.board.calls.delete(call.id);
        else app.board.calls.set(call.id, { ...(app.board.calls.get(call.id) || {}), ...call });
        if (app.view === 'board') debounce('board', () => renderBoard(app.board), 200);
      }
      const isNew = !app.desk.entries.has(call.id);
      app.desk.show(call, d.card, mine);
      if (isNew && msg.type === 'call.ringing' && mine && app.desk.entries.has(call.id)) {
        notifyRinging(t('notify.ringing_title'), app.desk.callerName(app.desk.entries.get(call.id)));
      }
      if (msg.type === 'call.ended') {
        // a new call tops the first page; pages the agent opened with "More" are left alone
        if (app.view === 'history' && historyState().pages <= 1) debounce('history', () => loadHistory(dispositions));
        if (mine && call.direction === 'inbound' && call.outcome !== 'answered') {
          if (app.view === 'missed') debounce('missed', () => loadMissed(dispositions));
          else {
            app.missed += 1; // counted here; the list loads when the agent opens it
            showCount($('missed-count'), app.missed, 'count.missed');
          }
        }
      }
      break;
    }
    case 'presence':
      if (d.username === u) showPresence(d);
      if (app.me && app.me.role !== 'agent') {
        app.board.agents.set(d.username, d);
        if (app.view === 'board') debounce('board', () => renderBoard(app.board), 200);
      }
      break;
    case 'aftercall':
      onAfterCall(d);
      break;
    case 'controls':
      consultationChanged(app.desk, d);
      break;
    case 'clicktocall.progress':
      showProgress(d);
      break;
    case 'followup.due':
      toast(t('followups.due_toast', { title: d.title, person: d.person || '' }), 'info', 10000);
      debounce('followups', loadFollowups, 1000);
      break;
    default:
      break;
  }
  for (const listener of app.listeners) listener(msg);
  for (const v of views.values()) if (v.onMessage) v.onMessage(msg);
}

async function refresh() {
  try {
    const s = await api('/panel/api/state');
    app.me = s.me;
    app.dispositions = s.dispositions;
    if (typeof s.after_call_seconds === 'number') app.afterCallSeconds = s.after_call_seconds;
    app.desk.held = new Set(s.held || []);
    app.desk.consulting = new Map(Object.entries(s.consulting || {}));
    renderMe();
    showPresence(s.presence);
    for (const { call, card } of s.calls) app.desk.show(call, card, true);
    app.desk.restoreWrapups(s.wrapups || []);
    for (const p of s.clicktocall) showProgress(p);
    loadMissed(dispositions).then(() => { app.missed = Number($('missed-count').textContent.match(/\d+/)) || 0; });
    loadFollowups();
    if (app.view === 'history') loadHistory(dispositions);
    if (app.view === 'board') loadBoard();
  } catch (e) { toast(errorText(e), 'error'); }
}

async function loadBoard() {
  if (!app.me || app.me.role === 'agent') return;
  try {
    const doc = await api('/panel/api/board');
    app.board.agents = new Map(doc.agents.map((a) => [a.username, a]));
    app.board.calls = new Map(doc.calls.map((c) => [c.id, c]));
    renderBoard(app.board);
  } catch (e) { toast(errorText(e), 'error'); }
}

function renderMe() {
  const me = app.me;
  if (!me) return;
  clear($('me')).append(h('div', { class: 'avatar small', 'aria-hidden': 'true' }, initials(me.display_name)),
    h('div', {}, h('strong', {}, me.display_name),
      h('div', { class: 'muted small' }, `${tId('role', me.role, me.role)} · ${t('me.extensions', { ext: (me.extensions || []).join(', ') || '—' })}`)));
  $('nav-board').hidden = me.role === 'agent';
  // views for some roles only (the wallboard): their nav button is hidden for the others
  for (const v of views.values()) if (v.roles) v.button.hidden = !v.roles.includes(me.role);
  document.body.dataset.user = me.username;
}

// The page title says what rings: "(2) Llamada entrante · Centralita" in a background tab.
function updateTitle() {
  const ringing = app.desk ? app.desk.ringingCount() : 0;
  const view = views.get(app.view);
  document.title = ringing
    ? t('title.ringing', { count: ringing })
    : `${t(view ? view.titleKey : 'nav.live')} · Centralita`;
  showCount($('ringing-count'), ringing, 'count.ringing');
  ringWhile(ringing);
}

// -- views ----------------------------------------------------------------------------------

function show(view, { focus = false } = {}) {
  if (!views.has(view) || views.get(view).button.hidden) return;
  app.view = view;
  for (const [id, v] of views) {
    v.section.hidden = id !== view;
    v.button.classList.toggle('active', id === view);
    if (id === view) v.button.setAttribute('aria-current', 'page');
    else v.button.removeAttribute('aria-current');
  }
  const spec = views.get(view);
  $('view-heading').textContent = t(spec.titleKey);
  updateTitle();
  document.body.dataset.view = view;
  if (spec.onShow) spec.onShow(spec.section);
  if (focus) $('view-heading').focus();
}
app.show = show;

// "#wallboard?tv=1" opens a view (and its options) from a link or a bookmark on a TV.
function fromHash() {
  const [id, query] = window.location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  app.hashParams = params;
  if (id && views.has(id) && !views.get(id).button.hidden) show(id);
}

registerView('live', { titleKey: 'nav.live' });
registerView('history', { titleKey: 'nav.history', onShow: () => loadHistory(dispositions) });
registerView('missed', { titleKey: 'nav.missed', onShow: () => loadMissed(dispositions).then(() => { app.missed = Number($('missed-count').textContent.match(/\d+/)) || 0; }) });
registerView('followups', { titleKey: 'nav.followups', onShow: () => loadFollowups() });
registerView('board', { titleKey: 'nav.board', onShow: () => loadBoard() });

// -- settings -------------------------------------------------------------------------------

function applyTheme(theme) {
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function applyPrefs(prefs) {
  app.prefs = { ...app.prefs, ...prefs };
  alerts.notifications = app.prefs.notifications;
  alerts.ringSound = app.prefs.ring_sound;
  applyTheme(app.prefs.theme);
  // switched off while a call rings in the background: silent from now on
  ringWhile(app.desk ? app.desk.ringingCount() : 0);
}

function openSettings() {
  const select = clear($('settings-language'));
  select.append(h('option', { value: '' }, t('settings.language_auto')));
  for (const code of app.languages) select.append(h('option', { value: code, lang: code }, t(`language.${code}`)));
  select.value = app.prefs.language || '';
  $('settings-theme').value = app.prefs.theme;
  $('settings-notifications').checked = app.prefs.notifications;
  $('settings-ring').checked = app.prefs.ring_sound;
  $('settings').showModal();
}

async function saveSettings(ev) {
  ev.preventDefault();
  const body = {
    language: $('settings-language').value || null,
    theme: $('settings-theme').value,
    notifications: $('settings-notifications').checked,
    ring_sound: $('settings-ring').checked,
  };
  if (body.notifications && (!app.prefs.notifications || ('Notification' in window && Notification.permission === 'default'))) askPermission();
  try {
    const saved = await api('/panel/api/preferences', body);
    const relang = saved.language !== app.prefs.language;
    applyPrefs(saved);
    $('settings').close();
    if (relang) await relabel();
    $('open-settings').focus();
  } catch (e) { toast(errorText(e), 'error'); }
}

// Everything on screen in the new language, without losing what the agent typed.
async function relabel() {
  await loadLanguage(app.prefs.language, app.languages);
  translatePage();
  document.body.dataset.lang = language();
  renderMe();
  showPresence(app.presence);
  app.desk.relabel();
  tickAfterCall();
  if (lastProgress) showProgress(lastProgress);
  setLinkState(document.body.dataset.socket || 'connecting');
  renderShortcuts();
  show(app.view);
}

// -- keyboard ------------------------------------------------------------------------------------

const SHORTCUTS = [
  ['?', 'help.key_help'], ['n', 'help.key_notes'], ['w', 'help.key_wrapup'], ['1–9', 'help.key_disposition'],
  ['Ctrl+Enter', 'help.key_save'], ['d', 'help.key_dial'], ['p', 'help.key_presence'],
  ['l', 'help.key_live'], ['h', 'help.key_history'], ['m', 'help.key_missed'], ['f', 'help.key_followups'],
  ['s', 'help.key_search'], ['k', 'help.key_worklist'],
  ['Esc', 'help.key_escape'],
];
const VIEW_KEYS = { l: 'live', h: 'history', m: 'missed', f: 'followups', b: 'board', s: 'search', k: 'worklist', g: 'wallboard' };

function renderShortcuts() {
  clear($('shortcut-list')).append(...SHORTCUTS.map(([key, label]) => h('div', {}, h('dt', {}, h('kbd', {}, key)), h('dd', {}, t(label)))));
}

function typing(el) {
  return el && (el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName));
}

function focusWrapup() {
  const entry = app.desk.firstPendingWrapup();
  if (!entry) return false;
  app.desk.open(entry);
  const chip = entry.wrap.buttons.find((b) => b.tabIndex === 0) || entry.wrap.buttons[0];
  if (chip) chip.focus();
  return true;
}

function onKey(ev) {
  if (ev.defaultPrevented) return;
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    const entry = [...app.desk.entries.values()].find((e) => e.el.contains(document.activeElement)) || app.desk.firstPendingWrapup();
    if (entry && entry.wrap && entry.wrap.save && !entry.saved) {
      ev.preventDefault();
      entry.wrap.save.click();
    }
    return;
  }
  if (ev.key === 'Escape') {
    if (!$('presence-menu').hidden) { closePresence(true); return; }
    if (!$('c2c').hidden && $('c2c').contains(document.activeElement)) { dismissProgress(); return; }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(document.activeElement) || document.querySelector('dialog[open]')) return;
  const current = app.desk.current();
  if (ev.key === '?') { ev.preventDefault(); $('help').showModal(); return; }
  if (ev.key === 'd') { ev.preventDefault(); $('dial-number').focus(); return; }
  if (ev.key === 'p') { ev.preventDefault(); openPresence(); return; }
  if (ev.key === 'n' && current) { ev.preventDefault(); show('live'); current.p.notes.focus(); return; }
  if (ev.key === 'w') { show('live'); if (focusWrapup()) ev.preventDefault(); return; }
  if (/^[1-9]$/.test(ev.key)) {
    const entry = app.desk.firstPendingWrapup();
    const d = app.dispositions[Number(ev.key) - 1];
    if (entry && entry.wrap && d) { ev.preventDefault(); app.desk.pick(entry, d.id, true); }
    return;
  }
  if (VIEW_KEYS[ev.key]) { ev.preventDefault(); show(VIEW_KEYS[ev.key], { focus: true }); }
}

// -- start ---------------------------------------------------------------------------------------

function setLinkState(s) {
  const el = $('link-state');
  el.dataset.state = s;
  el.textContent = t(`link.${s}`);
  document.body.dataset.socket = s;
}

async function init() {
  // the user's language and settings first, so nothing shows in the wrong language
  try {
    const s = await api('/panel/api/state');
    app.languages = s.languages || app.languages;
    applyPrefs(s.preferences || {});
    app.me = s.me;
    app.dispositions = s.dispositions;
  } catch (e) { /* the socket's refresh will retry */ }
  await loadLanguage(app.prefs.language, app.languages);
  translatePage();
  document.body.dataset.lang = language();
  renderShortcuts();
  app.desk = new Desk({ container: $('popups'), empty: $('live-empty'), me: () => app.me, dispositions, onChange: updateTitle });
  app.desk.parkedBox = $('parked');
  installWallboard(app);
  installWorklist(app);
  installRecords(app);
  installCampaigns(app);
  installReports(app);
  installMailbox(app);
  for (const [id, v] of views) v.button.addEventListener('click', () => show(id));
  if (app.me) renderMe();
  show('live');
  fromHash();
  window.addEventListener('hashchange', fromHash);
  window.setInterval(tickAfterCall, 1000);
  $('history-filters').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(dispositions); });
  $('history-more').addEventListener('click', () => loadHistory(dispositions, { more: true }));
  $('dialer').addEventListener('submit', (e) => {
    e.preventDefault();
    const number = $('dial-number').value.trim();
    if (number) clickToCall(number);
  });
  $('presence-button').addEventListener('click', () => ($('presence-menu').hidden ? openPresence() : closePresence(true)));
  $('presence-menu').addEventListener('keydown', presenceKeys);
  $('presence-menu').addEventListener('click', (ev) => { const li = ev.target.closest('[data-status]'); if (li) commitPresence(li.dataset.status); });
  $('presence-button').addEventListener('keydown', (ev) => { if (ev.key === 'ArrowDown') { ev.preventDefault(); openPresence(); } });
  $('open-settings').addEventListener('click', openSettings);
  $('settings-form').addEventListener('submit', saveSettings);
  $('settings-cancel').addEventListener('click', () => $('settings').close());
  $('open-help').addEventListener('click', () => $('help').showModal());
  $('help-close').addEventListener('click', () => $('help').close());
  document.addEventListener('keydown', onKey);
  document.addEventListener('visibilitychange', updateTitle);
  onFirstGesture();
  $('logout').addEventListener('click', async () => {
    await api('/panel/api/logout', {}).catch(() => null);
    window.location.assign('/panel/login');
  });
  const socket = new LiveSocket({ onMessage, onRefresh: refresh, onStatus: setLinkState });
  socket.start();
}

init();

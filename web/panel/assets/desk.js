// The live desk: one card per call, updated in place. A live update changes the texts and
// classes of the card that is already there; it never rebuilds the notes, the create-lead form
// or the wrap-up, so focus, typed keystrokes and form contents survive every update.
//
// Lifecycle: a card appears when a call rings for this user, follows it while answered, and
// once ended either waits for the wrap-up (then leaves a few seconds after Save) or leaves on
// its own after a timeout. The desk holds at most MAX_CARDS cards: beyond that the oldest
// ended ones go first, so the page stays the same size all day. One call is in focus (full
// card); the others are compact until the agent opens them.
import { api, clear, h, initials } from './dom.js';
import { activityText, countryName, duration, t, tId, when } from './i18n.js';
import { announce, callButton, errorText, toast } from './ui.js';
import { buildControls, relabelControls } from './callcontrols.js';
import { buildQualification, relabelQualification } from './qualify.js';
import { insightList } from './insight.js';

export const LIMITS = {
  maxCards: 6,
  savedLingerMs: 4000, // after Save, long enough to see the tick
  endedLingerMs: 20000, // calls that need nothing from this agent
  pendingLingerMs: 15 * 60 * 1000, // an untouched wrap-up
};
const FORGET = 500; // ids of closed cards remembered, so a late update does not bring one back
// Wrap-ups that had to leave the desk (cap, timeout, closed by hand) wait in a list instead of
// being lost; the list shows a few at a time, the rest are counted (the page stays small).
const PARKED_MAX = 200;
const PARKED_SHOWN = 5;
// A reloaded tab gets the unsaved wrap-ups back from the server: the newest few as cards, the
// rest in the pending list. What the agent typed into them waits in this tab's sessionStorage
// (gone with the tab, never sent anywhere until Save).
const RESTORED_CARDS = 3;
const DRAFT = 'centralita.wrapup.';

let serial = 0;

export class Desk {
  constructor({ container, empty, me, dispositions, onChange }) {
    this.container = container;
    this.empty = empty;
    this.me = me;
    this.dispositions = dispositions;
    this.onChange = onChange || (() => {});
    this.entries = new Map();
    this.closed = new Set();
    this.focusId = null; // the card the agent opened; null: the desk picks
    this.held = new Set(); // ids of this agent's calls on hold
    this.consulting = new Map(); // call id -> { to, since }: an attended transfer in progress
    this.acw = null; // after-call work: { callId, deadline (ms) }
    this.parked = []; // wrap-ups waiting off the desk, newest first: { call, card, notes }
    this.parkedBox = null;
  }

  get username() {
    return this.me() ? this.me().username : '';
  }

  // A call event (or the state snapshot) for a call. `mine`: it concerns this user.
  show(call, card, mine) {
    const known = this.entries.get(call.id);
    if (!known && (!mine || this.closed.has(call.id))) return;
    const entry = known || this.create(call);
    entry.call = { ...entry.call, ...call };
    if (entry.call.state === 'ended') {
      this.held.delete(call.id);
      this.consulting.delete(call.id);
    }
    if (card) entry.card = card;
    this.update(entry);
    if (!known && entry.call.state === 'ringing' && this.isMine(entry)) {
      announce(t('announce.ringing', { name: this.callerName(entry) }));
    }
    this.schedule(entry);
    this.enforceCap();
    this.arrange();
  }

  isMine(entry) {
    const c = entry.call;
    const u = this.username;
    return (c.agents || []).includes(u) || c.answered_agent === u || Boolean(c.click_to_call);
  }

  needsWrapup(entry) {
    return entry.call.state === 'ended' && (entry.call.wrapup || []).includes(this.username) && !entry.saved;
  }

  callerName(entry) {
    const card = entry.card || {};
    return card.known ? card.display_name : (card.number || entry.call.number || entry.call.caller || t('card.unknown_number'));
  }

  create(call) {
    serial += 1;
    const id = `card-${serial}`;
    const p = {};
    p.statusText = h('span', { class: 'status-text', id: `${id}-status` });
    p.status = h('div', { class: 'popup-status' }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), p.statusText);
    p.avatar = h('div', { class: 'avatar', 'aria-hidden': 'true' });
    p.title = h('h2', { class: 'caller-title', id: `${id}-title` });
    p.sub = h('div', { class: 'sub' });
    p.callerid = h('div', { class: 'callerid' });
    p.badges = h('div', { class: 'badges' });
    p.toggle = h('button', { class: 'btn btn-ghost btn-small card-toggle', type: 'button', 'aria-expanded': 'false', onclick: () => this.open(entry) });
    p.close = h('button', { class: 'close', type: 'button', onclick: () => this.close(entry, true) }, '×');
    p.body = h('div', { class: 'popup-body' });
    p.notes = h('textarea', { class: 'notes', rows: 3, id: `${id}-notes`, oninput: () => this.keepDraft(entry) });
    p.notesLabel = h('label', { class: 'sr-only', for: `${id}-notes` });
    p.notesWrap = h('div', { class: 'popup-notes' }, p.notesLabel, p.notes);
    p.wrap = h('div', { class: 'wrapup-slot' });
    p.controls = h('div', { class: 'controls-slot' });
    p.qualify = h('div', { class: 'qualify-slot' });
    p.acw = h('p', { class: 'acw-countdown', role: 'timer', hidden: true });
    const el = h('article', { class: 'popup', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-status`, dataset: { callId: call.id } },
      p.status,
      h('header', { class: 'popup-head' }, p.avatar, h('div', { class: 'who' }, p.title, p.sub, p.callerid), p.badges, p.toggle),
      p.close, p.controls, p.body, p.qualify, p.notesWrap, p.acw, p.wrap);
    const entry = { call, card: null, el, p, form: null, wrap: null, saved: false, created: '', bodyKey: null, timer: null, born: serial, controls: null, qualify: null };
    p.toggle.onclick = () => this.open(entry);
    this.entries.set(call.id, entry);
    this.container.prepend(el);
    return entry;
  }

  // Everything that depends on the call's state or the language, changed in place.
  update(entry) {
    const c = entry.call;
    const card = entry.card || {};
    const p = entry.p;
    const [tone, text] = this.statusLine(entry);
    setClass(entry.el, 'tone-', tone);
    entry.el.dataset.state = c.state;
    setText(p.statusText, text);
    const number = card.number || c.number || c.caller || '';
    const known = Boolean(card.known);
    setText(p.title, known ? card.display_name : (number || t('card.unknown_number')));
    setText(p.avatar, known ? initials(card.display_name) : '#');
    p.avatar.classList.toggle('avatar-unknown', !known);
    const subKey = JSON.stringify([known && card.company, number, known && card.display_name, document.documentElement.lang]);
    if (p.sub.dataset.key !== subKey) {
      p.sub.dataset.key = subKey;
      clear(p.sub).append(
        known && card.company ? h('span', { class: 'company' }, card.company) : '',
        h('span', { class: 'number' }, card.number_display || number),
        callButton(number, known ? card.display_name : (card.number_display || number)));
    }
    const cidKey = JSON.stringify([c.caller_name || '', document.documentElement.lang]);
    if (p.callerid.dataset.key !== cidKey) {
      p.callerid.dataset.key = cidKey;
      if (c.caller_name) clear(p.callerid).append(h('span', { class: 'label' }, `${t('card.caller_id')} `), h('span', { class: 'callerid-name' }, c.caller_name));
      else clear(p.callerid);
    }
    const badgeKey = JSON.stringify([card.known, card.kind, card.lead_status, card.lead_score, card.do_not_call, document.documentElement.lang]);
    if (p.badges.dataset.key !== badgeKey) {
      p.badges.dataset.key = badgeKey;
      clear(p.badges).append(
        known ? h('span', { class: `badge kind-${card.kind}` }, tId('kind', card.kind, card.kind)) : h('span', { class: 'badge kind-unknown' }, t('card.new_caller')),
        card.lead_status ? h('span', { class: `badge status-${card.lead_status}` }, tId('lead_status', card.lead_status, card.lead_status)) : '',
        card.lead_score !== null && card.lead_score !== undefined ? h('span', { class: 'badge score', title: t('card.score_hint') }, `★ ${Number(card.lead_score).toLocaleString(document.documentElement.lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 })}`) : '',
        card.do_not_call ? h('span', { class: 'badge dnc' }, t('card.do_not_call')) : '');
    }
    p.close.hidden = c.state !== 'ended';
    p.close.setAttribute('aria-label', t('card.close_named', { name: this.callerName(entry) }));
    p.notes.placeholder = t('card.notes_placeholder');
    setText(p.notesLabel, t('card.notes_label'));
    const bodyKey = JSON.stringify([card, entry.created, document.documentElement.lang]);
    if (entry.bodyKey !== bodyKey) {
      entry.bodyKey = bodyKey;
      const keep = entry.el.contains(document.activeElement) && p.body.contains(document.activeElement) ? document.activeElement : null;
      clear(p.body).append(known ? this.knownBody(card) : this.unknownBody(entry, card, number));
      if (keep && p.body.contains(keep)) keep.focus();
    }
    p.notesWrap.hidden = !(c.state !== 'ringing' || this.isMine(entry));
    // controls on the agent's own answered call only (the server checks it again)
    const controllable = c.state === 'answered' && (c.answered_agent === this.username || (c.click_to_call && this.isMine(entry)));
    if (controllable && !entry.controls) {
      entry.controls = buildControls(entry, this);
      p.controls.append(entry.controls.el);
    }
    p.controls.hidden = !controllable;
    if (entry.controls) relabelControls(entry, this);
    // a lead's qualification script, while it rings for this agent and during the call
    if (card.kind === 'lead' && card.person_id && c.state !== 'ended' && this.isMine(entry) && !entry.qualify) {
      entry.qualify = buildQualification(card.person_id, `${p.title.id}-q`);
      p.qualify.append(entry.qualify.el);
    }
    if (entry.qualify) relabelQualification(entry.qualify);
    this.tickEntry(entry);
    if (c.state === 'ended' && ((c.wrapup || []).includes(this.username) || entry.saved)) this.wrapup(entry);
  }

  statusLine(entry) {
    const c = entry.call;
    const u = this.username;
    const mine = (c.agents || []).includes(u);
    if (c.state === 'ringing') {
      const ringing = c.ringing || [];
      const kind = c.click_to_call ? t('status.your_click_to_call') : c.direction === 'outbound' ? t('status.outgoing') : t('status.incoming');
      const where = ringing.length ? t('status.ringing_at', { where: ringing.join(', ') }) : t('status.stopped_ringing');
      const via = c.queue ? ` · ${t('status.queue', { queue: c.queue })}` : '';
      return [mine || c.click_to_call ? 'ringing' : 'elsewhere', `${kind} · ${where}${via}`];
    }
    if (c.state === 'answered') {
      const consult = this.consulting.get(c.id);
      if (c.answered_agent === u && consult) return ['talking', t('controls.consulting', { to: consult.to })];
      if (c.answered_agent === u) return ['talking', this.held.has(c.id) ? t('status.on_hold_with_you') : t('status.on_call_with_you')];
      return ['elsewhere', t('status.answered_by', { name: c.answered_agent || c.answered_by || t('status.someone_else') })];
    }
    const outcome = c.outcome ? tId('outcome', c.outcome, c.outcome) : '';
    const talk = c.talk_seconds ? ` · ${t('status.talked', { duration: duration(c.talk_seconds) })}` : '';
    return ['ended', `${t('status.ended')} · ${outcome}${talk}`];
  }

  knownBody(card) {
    const score = card.lead_score !== null && card.lead_score !== undefined
      ? t('card.score_of_ten', { score: Number(card.lead_score).toLocaleString(document.documentElement.lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) }) : '—';
    const facts = [
      [t('card.status'), card.lead_status ? tId('lead_status', card.lead_status, card.lead_status) : (card.kind === 'contact' ? t('card.customer') : '—')],
      [t('card.score'), score],
      [t('card.owner'), card.owner || t('card.unassigned')],
      [t('card.country'), countryName(card.country) || '—'],
    ];
    const interactions = (card.interactions || []).slice(0, 4);
    const followUps = card.follow_ups || [];
    const now = Date.now() / 1000;
    return h('div', {},
      h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
      // customer metrics (segment, value, churn risk, data quality, next step), precomputed
      (card.insight || []).length ? insightList(card.insight) : '',
      h('div', { class: 'columns' },
        h('section', {},
          h('h3', {}, t('card.last_interactions')),
          interactions.length
            ? h('ul', { class: 'timeline' }, interactions.map((i) => h('li', {}, h('span', { class: `tl-kind tl-${i.kind}` }, tId('activity', i.kind, i.kind)), h('span', { class: 'tl-text' }, activityText(i)), h('time', {}, when(i.at)))))
            : h('p', { class: 'muted' }, t('card.no_interactions'))),
        h('section', {},
          h('h3', {}, t('card.open_follow_ups')),
          followUps.length
            ? h('ul', { class: 'timeline' }, followUps.map((f) => h('li', { class: f.due_at < now ? 'overdue' : '' }, h('span', { class: 'tl-text' }, f.title),
              h('time', {}, f.due_at < now ? `${t('followups.overdue')} · ` : '', when(f.due_at)))))
            : h('p', { class: 'muted' }, t('card.nothing_pending')))),
      card.external_url ? h('a', { class: 'btn btn-secondary btn-small crm-link', href: card.external_url, target: '_blank', rel: 'noopener noreferrer' }, t('card.open_in', { crm: card.source || 'CRM' }), h('span', { 'aria-hidden': 'true' }, ' ↗')) : '',
    );
  }

  unknownBody(entry, card, number) {
    const country = countryName(card.country);
    const facts = h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, t('card.number')), h('dd', {}, card.number_display || number || '—')),
      h('div', {}, h('dt', {}, t('card.country')), h('dd', {}, country || '—')),
      h('div', {}, h('dt', {}, t('card.line')), h('dd', {}, card.line_type ? tId('line', card.line_type, card.line_type.replace(/_/g, ' ')) : '—')));
    if (entry.created) return h('div', {}, facts, h('p', { class: 'created', role: 'status' }, `✓ ${entry.created}`));
    if (!entry.form) {
      // built once per card: what the agent types survives every update of the call
      const field = (name, type = 'text') => h('input', { name, type, autocomplete: 'off' });
      entry.form = { first_name: field('first_name'), last_name: field('last_name'), company: field('company'), email: field('email', 'email') };
      entry.form.lead = h('button', { class: 'btn btn-primary btn-small', type: 'button', onclick: () => this.createPerson(entry, 'lead', number) });
      entry.form.contact = h('button', { class: 'btn btn-secondary btn-small', type: 'button', onclick: () => this.createPerson(entry, 'contact', number) });
    }
    const f = entry.form;
    const labelled = (input, key) => h('label', { class: 'field' }, h('span', {}, t(key)), input);
    setText(f.lead, t('card.create_lead'));
    setText(f.contact, t('card.create_contact'));
    return h('div', {}, facts,
      h('form', { class: 'create-form', onsubmit: (ev) => ev.preventDefault() },
        h('h3', {}, t('card.not_in_crm')),
        h('div', { class: 'grid2' }, labelled(f.first_name, 'person.first_name'), labelled(f.last_name, 'person.last_name'),
          labelled(f.company, 'person.company'), labelled(f.email, 'person.email')),
        h('div', { class: 'actions' }, f.lead, f.contact)));
  }

  async createPerson(entry, kind, number) {
    const f = entry.form;
    const body = { kind, phone: number, first_name: f.first_name.value, last_name: f.last_name.value, company: f.company.value };
    if (f.email.value) body.email = f.email.value;
    try {
      const r = await api('/panel/api/people', body);
      entry.created = t(kind === 'lead' ? 'card.lead_saved' : 'card.contact_saved', { name: r.person.name || number, outcome: tId('person_outcome', r.outcome, r.outcome) });
      const lookup = await api(`/panel/api/lookup?number=${encodeURIComponent(number)}`);
      entry.card = lookup.card;
      this.update(entry);
      entry.p.notes.focus(); // the form is gone; the notes are where the agent goes next
    } catch (e) {
      toast(errorText(e), 'error');
    }
  }

  wrapup(entry) {
    const slot = entry.p.wrap;
    if (entry.saved) {
      if (!entry.wrap || !entry.wrap.done) {
        const close = h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => this.close(entry, true) }, t('action.close'));
        const hadFocus = entry.el.contains(document.activeElement);
        clear(slot).append(h('div', { class: 'wrapup saved', role: 'status' }, h('span', {}, `✓ ${t('wrapup.saved')}`), close));
        entry.wrap = { ...(entry.wrap || {}), done: true, close };
        if (hadFocus || document.activeElement === document.body) close.focus();
      }
      return;
    }
    if (!entry.wrap) {
      const date = h('input', { type: 'date', name: 'follow_up_at' });
      const chips = h('div', { class: 'chips', role: 'radiogroup' });
      const save = h('button', { class: 'btn btn-primary', type: 'button', onclick: () => this.save(entry) });
      const heading = h('h3', { id: `${entry.p.title.id}-wrap` });
      const dateLabel = h('span', {});
      chips.setAttribute('aria-labelledby', heading.id);
      chips.addEventListener('keydown', (ev) => this.chipKeys(entry, ev));
      entry.wrap = { disposition: '', date, chips, save, heading, dateLabel, buttons: [] };
      for (const d of this.dispositions()) {
        const b = h('button', { type: 'button', role: 'radio', class: 'chip', dataset: { disposition: d.id }, onclick: () => this.pick(entry, d.id, false) });
        entry.wrap.buttons.push(b);
        chips.append(b);
      }
      clear(slot).append(h('div', { class: 'wrapup' }, heading, chips,
        h('div', { class: 'wrapup-row' }, h('label', {}, dateLabel, ' ', date), save)));
    }
    const w = entry.wrap;
    setText(w.heading, t('wrapup.heading'));
    setText(w.dateLabel, t('wrapup.follow_up_on'));
    setText(w.save, t('action.save'));
    const list = this.dispositions();
    w.buttons.forEach((b, i) => {
      const d = list[i] || { id: b.dataset.disposition, label: b.dataset.disposition };
      setText(b, tId('disposition', d.id, d.label));
      const on = w.disposition === d.id;
      b.classList.toggle('selected', on);
      b.setAttribute('aria-checked', on ? 'true' : 'false');
      // roving tabindex: Tab enters the group once, arrows move inside it
      b.tabIndex = on || (!w.disposition && i === 0) ? 0 : -1;
    });
  }

  pick(entry, id, focus) {
    entry.wrap.disposition = id;
    this.wrapup(entry);
    this.keepDraft(entry);
    if (focus) entry.wrap.buttons.find((b) => b.dataset.disposition === id).focus();
  }

  chipKeys(entry, ev) {
    const buttons = entry.wrap.buttons;
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[ev.key];
    if (step) {
      ev.preventDefault();
      const next = buttons[(i + step + buttons.length) % buttons.length];
      this.pick(entry, next.dataset.disposition, true);
    } else if (ev.key === 'Home' || ev.key === 'End') {
      ev.preventDefault();
      this.pick(entry, buttons[ev.key === 'Home' ? 0 : buttons.length - 1].dataset.disposition, true);
    }
  }

  async save(entry) {
    const w = entry.wrap;
    w.save.disabled = true;
    const body = { notes: entry.p.notes.value, disposition: w.disposition, follow_up_at: w.date.value || null };
    for (let attempt = 0; attempt < 5; attempt += 1) {
      try {
        const res = await api(`/panel/api/calls/${encodeURIComponent(entry.call.id)}/wrapup`, body);
        // saved; but the after-call work another instance runs may not have ended with it
        if (res && res.pbx_warning) toast(t('wrapup.pbx_warning'), 'error');
        entry.saved = true;
        dropDraft(entry.call.id);
        const hadFocus = entry.el.contains(document.activeElement) || document.activeElement === document.body;
        this.wrapup(entry);
        if (hadFocus) entry.wrap.close.focus();
        this.schedule(entry);
        this.arrange();
        return;
      } catch (e) {
        if (e.status === 404 && attempt < 4) { // the call log write may be a moment behind
          await new Promise((r) => window.setTimeout(r, 400));
          continue;
        }
        toast(errorText(e), 'error');
        w.save.disabled = false;
        return;
      }
    }
  }

  // After-call work started/ended (aftercall message or presence `until`).
  setAfterCall(callId, deadlineMs) {
    this.acw = callId && deadlineMs ? { callId, deadline: deadlineMs } : null;
    for (const e of this.entries.values()) this.tickEntry(e);
  }

  // The wrap-up's countdown: the time left to write it before the agent is offered calls again.
  tickEntry(entry) {
    const el = entry.p.acw;
    const on = Boolean(this.acw && this.acw.callId === entry.call.id && !entry.saved);
    el.hidden = !on;
    if (!on) return;
    const left = Math.max(0, Math.round((this.acw.deadline - Date.now()) / 1000));
    setText(el, t('acw.card_countdown', { time: clockText(left) }));
  }

  tick() {
    for (const e of this.entries.values()) this.tickEntry(e);
  }

  // The notes and disposition typed into a card survive a reload of this tab.
  keepDraft(entry) {
    const notes = entry.p.notes.value;
    const disposition = entry.wrap ? entry.wrap.disposition : '';
    try {
      if (notes || disposition) sessionStorage.setItem(DRAFT + entry.call.id, JSON.stringify({ notes, disposition }));
      else sessionStorage.removeItem(DRAFT + entry.call.id);
    } catch (e) { /* storage full or off: the card still holds them */ }
  }

  // After a reload (or a reconnect): the wrap-ups the server says this agent still owes.
  // `items`: [{ call, card }], newest first. Cards and list entries already here stay as
  // they are; a call whose card was closed after saving is not brought back.
  restoreWrapups(items) {
    const known = new Set([...this.entries.keys(), ...this.parked.map((x) => x.call.id)]);
    const fresh = items.filter((x) => !known.has(x.call.id) && !this.closed.has(x.call.id));
    if (!fresh.length) return;
    const acw = this.acw && this.acw.callId;
    const onDesk = fresh.filter((x, i) => i < RESTORED_CARDS || x.call.id === acw);
    const parked = fresh.filter((x) => !onDesk.includes(x)).map((x) => ({ ...x, ...readDraft(x.call.id) }));
    this.parked = [...this.parked, ...parked].slice(0, PARKED_MAX);
    for (const x of [...onDesk].reverse()) { // oldest first: the newest ends on top
      this.show(x.call, x.card, true);
      const entry = this.entries.get(x.call.id);
      const draft = readDraft(x.call.id);
      if (entry && draft.notes && !entry.p.notes.value) entry.p.notes.value = draft.notes;
      if (entry && draft.disposition && entry.wrap) this.pick(entry, draft.disposition, false);
    }
    this.renderParked();
  }

  // A wrap-up leaving the desk waits in the pending list, notes and all.
  park(entry) {
    if (!this.needsWrapup(entry)) return;
    this.parked = [{ call: entry.call, card: entry.card, notes: entry.p.notes.value, disposition: entry.wrap ? entry.wrap.disposition : '' },
      ...this.parked.filter((x) => x.call.id !== entry.call.id)].slice(0, PARKED_MAX);
    this.renderParked();
  }

  unpark(id) {
    const item = this.parked.find((x) => x.call.id === id);
    if (!item) return;
    this.parked = this.parked.filter((x) => x.call.id !== id);
    this.closed.delete(id);
    this.focusId = id;
    this.show(item.call, item.card, true);
    const entry = this.entries.get(id);
    if (entry) {
      entry.p.notes.value = item.notes;
      if (item.disposition && entry.wrap) this.pick(entry, item.disposition, false);
      this.open(entry);
    }
    this.renderParked();
  }

  renderParked() {
    const box = this.parkedBox;
    if (!box) return;
    box.hidden = !this.parked.length;
    clear(box);
    if (!this.parked.length) return;
    box.append(h('h2', { class: 'section-title', id: 'parked-title' }, t('parked.title', { count: this.parked.length })),
      h('ul', { class: 'parked-list', 'aria-labelledby': 'parked-title' }, this.parked.slice(0, PARKED_SHOWN).map((x) => {
        const name = (x.card && x.card.known && x.card.display_name) || (x.card && x.card.number) || x.call.number || x.call.caller || t('card.unknown_number');
        return h('li', { dataset: { callId: x.call.id } }, h('span', {}, name), h('span', { class: 'muted small' }, when(x.call.started_at)),
          h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': t('parked.open_named', { name }), onclick: () => this.unpark(x.call.id) }, t('parked.open')));
      })),
      this.parked.length > PARKED_SHOWN ? h('p', { class: 'muted small' }, t('parked.more', { count: this.parked.length - PARKED_SHOWN })) : '');
  }

  // When an ended card leaves on its own.
  schedule(entry) {
    window.clearTimeout(entry.timer);
    entry.timer = null;
    if (entry.call.state !== 'ended') return;
    const ms = entry.saved ? LIMITS.savedLingerMs : this.needsWrapup(entry) ? LIMITS.pendingLingerMs : LIMITS.endedLingerMs;
    entry.timer = window.setTimeout(() => {
      // never pull a card from under the agent's hands; try again later
      if (entry.el.contains(document.activeElement)) this.schedule(entry);
      else this.close(entry, false);
    }, ms);
  }

  // The desk keeps at most LIMITS.maxCards: ended cards leave first (oldest first), then calls
  // ringing elsewhere. Calls of this agent still ringing or talking always stay.
  enforceCap() {
    while (this.entries.size > LIMITS.maxCards) {
      const all = [...this.entries.values()].sort((a, b) => a.born - b.born);
      const victim = all.find((e) => e.call.state === 'ended' && !this.needsWrapup(e) && !e.el.contains(document.activeElement))
        || all.find((e) => e.call.state === 'ended' && !e.el.contains(document.activeElement))
        || all.find((e) => !this.isMine(e) && !e.el.contains(document.activeElement));
      if (!victim) break;
      this.close(victim, false);
    }
  }

  // One card in focus, the others compact: the agent's live call, else the newest ringing
  // at them, else the newest wrap-up; a card the agent opened or is typing in stays open.
  arrange() {
    const all = [...this.entries.values()].sort((a, b) => b.born - a.born);
    const u = this.username;
    const chosen = this.entries.get(this.focusId)
      || all.find((e) => e.call.state === 'answered' && e.call.answered_agent === u)
      || all.find((e) => e.call.state === 'ringing' && this.isMine(e))
      || all.find((e) => this.needsWrapup(e))
      || all[0];
    for (const e of all) {
      const open = e === chosen || e.el.contains(document.activeElement);
      e.el.classList.toggle('compact', !open);
      e.p.toggle.hidden = open;
      e.p.toggle.setAttribute('aria-expanded', String(open));
      setText(e.p.toggle, t('card.show'));
      e.p.toggle.setAttribute('aria-label', t('card.show_named', { name: this.callerName(e) }));
    }
    this.empty.hidden = this.entries.size > 0;
    this.onChange();
  }

  open(entry) {
    this.focusId = entry.call.id;
    this.arrange();
    entry.p.title.setAttribute('tabindex', '-1');
    entry.p.title.focus();
  }

  close(entry, byHand) {
    if (!this.entries.has(entry.call.id)) return;
    const hadFocus = entry.el.contains(document.activeElement);
    window.clearTimeout(entry.timer);
    this.park(entry);
    entry.el.remove();
    this.entries.delete(entry.call.id);
    this.closed.add(entry.call.id);
    if (this.closed.size > FORGET) this.closed.delete(this.closed.values().next().value);
    if (this.focusId === entry.call.id) this.focusId = null;
    this.arrange();
    if (hadFocus || byHand) this.focusAfterClose();
  }

  // Focus goes somewhere useful, never to the page: the next card, else the desk's heading.
  focusAfterClose() {
    const next = this.firstPendingWrapup() || [...this.entries.values()].sort((a, b) => b.born - a.born)[0];
    if (next) {
      next.p.title.setAttribute('tabindex', '-1');
      next.p.title.focus();
    } else {
      const heading = document.getElementById('view-heading');
      if (heading) heading.focus();
    }
  }

  firstPendingWrapup() {
    return [...this.entries.values()].sort((a, b) => a.born - b.born).find((e) => this.needsWrapup(e));
  }

  current() {
    const open = [...this.entries.values()].find((e) => !e.el.classList.contains('compact'));
    return open || null;
  }

  ringingCount() {
    return [...this.entries.values()].filter((e) => e.call.state === 'ringing' && this.isMine(e)).length;
  }

  relabel() {
    this.renderParked();
    for (const e of this.entries.values()) {
      e.bodyKey = null;
      this.update(e);
    }
    this.arrange();
  }
}

function readDraft(callId) {
  try {
    const d = JSON.parse(sessionStorage.getItem(DRAFT + callId) || '{}');
    return { notes: String(d.notes || ''), disposition: String(d.disposition || '') };
  } catch (e) {
    return { notes: '', disposition: '' };
  }
}

function dropDraft(callId) {
  try { sessionStorage.removeItem(DRAFT + callId); } catch (e) { /* nothing kept */ }
}

// 75 -> "1:15": a countdown reads best as a clock.
export function clockText(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setClass(el, prefix, value) {
  for (const c of [...el.classList]) if (c.startsWith(prefix)) el.classList.remove(c);
  el.classList.add(`${prefix}${value}`);
}

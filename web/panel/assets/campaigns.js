// The supervisors' campaigns page (issue 13): the campaigns with their status and key figures;
// a form that writes a campaign exactly as the server's model has it (segment, steps, caps),
// with the segment's live count; start / pause / end; and the results: a funnel per step and
// the lost deals revived, by lost reason, and who left for each reason (replied first: the
// leads to call back). Everything a lead or a template says is shown as text; an e-mail's
// preview is HTML in a sandboxed frame that runs no script.
import { api, clear, h } from './dom.js';
import { dateTime, language, number, t, tId, when } from './i18n.js';
import { announce, errorText, toast } from './ui.js';
import { registerView } from './views.js';

const STATUSES = ['new', 'contacted', 'qualified', 'nurturing', 'won', 'lost'];
const LOST_REASONS = ['not_ready', 'no_budget', 'competitor', 'no_rapport', 'contact_left'];
const SOURCES = ['web_form', 'inbound_call', 'import', 'api'];
const LANGS = ['es', 'en'];
const MAX_CAMPAIGNS = 100; // a page of campaigns; more are rare, and the list says so
const COUNT_DELAY = 400; // ms of quiet typing before the segment is counted again
const POLL_MS = 4000; // the results view follows the scheduler this often
const LEFT_PAGE = 25; // who left for one reason, a page at a time ("more" asks for the next)
const MAX_LEFT_PAGE = 500; // the API's largest page: a refresh re-reads what is shown in one

// literal keys (the catalog test finds them): one label per step kind, condition, rule
const STEP_LABEL = {
  email: 'campaigns.step_email', call: 'campaigns.step_call', wait: 'campaigns.step_wait',
  wait_until: 'campaigns.step_wait_until', branch: 'campaigns.step_branch', set: 'campaigns.step_set', stop: 'campaigns.step_stop',
};
const CONDITION_LABEL = {
  opened: 'campaigns.cond_opened', replied: 'campaigns.cond_replied', answered_call: 'campaigns.cond_answered_call',
  disposition: 'campaigns.cond_disposition', score_at_least: 'campaigns.cond_score_at_least', status: 'campaigns.cond_status',
};
const ASSIGN_LABEL = { owner: 'campaigns.assign_owner', pool: 'campaigns.assign_pool', different_agent: 'campaigns.assign_different_agent' };
const STATUS_LABEL = { draft: 'campaigns.status_draft', running: 'campaigns.status_running', paused: 'campaigns.status_paused', ended: 'campaigns.status_ended' };
const REASON_LABEL = {
  not_ready: 'campaigns.reason_not_ready', no_budget: 'campaigns.reason_no_budget', competitor: 'campaigns.reason_competitor',
  no_rapport: 'campaigns.reason_no_rapport', contact_left: 'campaigns.reason_contact_left',
};
const SOURCE_LABEL = { web_form: 'campaigns.source_web_form', inbound_call: 'campaigns.source_inbound_call', import: 'campaigns.source_import', api: 'campaigns.source_api' };
const LANG_LABEL = { es: 'campaigns.lang_es', en: 'campaigns.lang_en' };
const LEFT_LABEL = {
  completed: 'campaigns.left_completed', converted: 'campaigns.left_converted', replied: 'campaigns.left_replied',
  unsubscribed: 'campaigns.left_unsubscribed', do_not_call: 'campaigns.left_do_not_call', no_longer_matches: 'campaigns.left_no_longer_matches',
  ended: 'campaigns.left_ended', removed: 'campaigns.left_removed', unreachable: 'campaigns.left_unreachable',
};
const RUN_LABEL = {
  sending: 'campaigns.run_sending', sent: 'campaigns.run_sent', failed: 'campaigns.run_failed', bounced: 'campaigns.run_bounced',
  unknown: 'campaigns.run_unknown', skipped: 'campaigns.run_skipped', task_created: 'campaigns.run_task_created',
  called: 'campaigns.run_called', expired: 'campaigns.run_expired', done: 'campaigns.run_done',
};

const reasonText = (r) => (REASON_LABEL[r] ? t(REASON_LABEL[r]) : r || t('campaigns.reason_none'));
const pct = (n, of) => (of ? number(n / of, { style: 'percent', maximumFractionDigits: 1 }) : '—');
const list = (text) => String(text || '').split(',').map((s) => s.trim()).filter(Boolean);
const num = (v) => (v === '' || v === null || v === undefined || Number.isNaN(Number(v)) ? null : Number(v));

// -- the model, as the server's CampaignIn has it ---------------------------------------------

let uidSeq = 0;
const uid = () => `s${++uidSeq}`;

function emptyTemplates() {
  return Object.fromEntries(LANGS.map((l) => [l, { subject: '', html: '', text: '' }]));
}

function newStep(kind) {
  const base = { uid: uid(), kind };
  switch (kind) {
    case 'email': return { ...base, templates: emptyTemplates() };
    case 'call': return { ...base, title: '', assign: 'owner', pool: [], expire_days: 7 };
    case 'wait': return { ...base, days: 2, hours: 0 };
    case 'wait_until': return { ...base, weekday: null, hour: 10, minute: 0 };
    case 'branch': return { ...base, condition: { kind: 'opened', value: null, values: [] }, then: null, otherwise: null };
    case 'set': return { ...base, status: null, owner: null, add_tags: [], score_inputs: {} };
    default: return base;
  }
}

function emptyDraft() {
  return {
    id: null, name: '', description: '', language: 'es', timezone: null,
    reentry_days: null, daily_email_cap: null, daily_call_cap: null,
    segment: { kinds: ['lead'], statuses: [], lost_reasons: [], lost_from: null, lost_to: null, score_min: null, score_max: null, sources: [], owners: [], last_activity_before: null, last_activity_after: null, tags: [], countries: [], answers: {} },
    steps: [newStep('email')],
  };
}

// a stored definition -> the form's draft (branch targets become step uids: they follow a move)
function draftOf(c) {
  const d = c.definition || c;
  const draft = { ...emptyDraft(), ...d, id: c.id ?? null, segment: { ...emptyDraft().segment, ...(d.segment || {}) } };
  draft.steps = (d.steps || []).map((s) => {
    const step = { ...newStep(s.kind), ...s, uid: uid() };
    if (s.kind === 'email') step.templates = { ...emptyTemplates(), ...Object.fromEntries(Object.entries(s.templates || {}).map(([l, tpl]) => [l, { subject: '', html: '', text: '', ...tpl }])) };
    if (s.kind === 'branch') step.condition = { value: null, values: [], ...s.condition };
    return step;
  });
  draft.steps.forEach((s) => {
    if (s.kind !== 'branch') return;
    for (const k of ['then', 'otherwise']) if (typeof s[k] === 'number') s[k] = (draft.steps[s[k]] || {}).uid || null;
  });
  return draft;
}

function segmentBody(seg) {
  const out = { kinds: seg.kinds && seg.kinds.length ? seg.kinds : ['lead'] };
  for (const k of ['statuses', 'lost_reasons', 'sources', 'owners', 'tags', 'countries']) if (seg[k] && seg[k].length) out[k] = seg[k];
  for (const k of ['lost_from', 'lost_to', 'last_activity_before', 'last_activity_after']) if (seg[k]) out[k] = seg[k];
  for (const k of ['score_min', 'score_max']) if (num(seg[k]) !== null) out[k] = num(seg[k]);
  if (seg.answers && Object.keys(seg.answers).length) out.answers = seg.answers;
  return out;
}

function stepBody(s, steps) {
  const at = (target) => {
    if (target === 'stop') return 'stop';
    const i = steps.findIndex((x) => x.uid === target);
    return i >= 0 ? i : null;
  };
  switch (s.kind) {
    case 'email': {
      const templates = {};
      for (const l of LANGS) {
        const tpl = s.templates[l];
        if (tpl && (tpl.subject.trim() || tpl.html.trim())) templates[l] = { subject: tpl.subject, html: tpl.html, text: tpl.text };
      }
      return { kind: 'email', templates };
    }
    case 'call': return { kind: 'call', title: s.title, assign: s.assign, pool: s.pool, expire_days: num(s.expire_days) ?? 7 };
    case 'wait': return { kind: 'wait', days: num(s.days) ?? 0, hours: num(s.hours) ?? 0 };
    case 'wait_until': return { kind: 'wait_until', weekday: num(s.weekday), hour: num(s.hour) ?? 10, minute: num(s.minute) ?? 0 };
    case 'branch': {
      const c = s.condition;
      const condition = { kind: c.kind };
      if (c.kind === 'score_at_least') condition.value = num(c.value);
      if (c.kind === 'disposition' || c.kind === 'status') condition.values = c.values;
      return { kind: 'branch', condition, then: at(s.then), otherwise: at(s.otherwise) };
    }
    case 'set': {
      const out = { kind: 'set' };
      if (s.status) out.status = s.status;
      if (s.owner) out.owner = s.owner;
      if (s.add_tags && s.add_tags.length) out.add_tags = s.add_tags;
      if (s.score_inputs && Object.keys(s.score_inputs).length) out.score_inputs = s.score_inputs;
      return out;
    }
    default: return { kind: s.kind };
  }
}

function campaignBody(d) {
  const out = { name: d.name.trim(), description: d.description || '', language: d.language, segment: segmentBody(d.segment), steps: d.steps.map((s) => stepBody(s, d.steps)) };
  for (const k of ['reentry_days', 'daily_email_cap', 'daily_call_cap']) if (num(d[k]) !== null) out[k] = num(d[k]);
  if (d.timezone) out.timezone = d.timezone;
  return out;
}

// -- results, read defensively: every figure may be missing from an older server ---------------

function figure(obj, ...names) {
  for (const n of names) {
    const v = n.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
    if (typeof v === 'number') return v;
  }
  return 0;
}

function sumValues(obj) {
  return Object.values(obj || {}).reduce((a, v) => a + (typeof v === 'number' ? v : 0), 0);
}

function keyFigures(r) {
  const totals = (r && r.totals) || r || {};
  return {
    entered: figure(r, 'entered'),
    active: figure(r, 'active'),
    sent: figure(totals, 'emails_sent', 'sent'),
    failed: figure(totals, 'emails_failed', 'failed'),
    bounced: figure(totals, 'emails_bounced', 'bounced'),
    unsubscribed: figure(totals, 'unsubscribed'),
    calls: figure(totals, 'calls_made', 'calls'),
    answered: figure(totals, 'calls_answered', 'answered'),
    converted: figure(totals, 'converted'),
    revived: figure(totals, 'revived') || sumValues(totals.revived_by_lost_reason),
  };
}

// -- the view ----------------------------------------------------------------------------------

export function installCampaigns(app) {
  const state = { mode: 'list', items: [], results: new Map(), draft: null, agents: null, countTimer: null, countSeq: 0, shown: null, poll: null, previewFor: null,
    // the results' counts of who left, by reason; and the reason whose members are listed
    // ({ cid, reason, items, next, count, loading, error }): kept here, so the page's refresh
    // every POLL_MS draws the same rows again (and the focus stays where it was)
    leftCounts: {}, left: null, leftSeq: 0 };
  let section = null;
  const link = h('link', { rel: 'stylesheet', href: '/panel/assets/campaigns.css' });
  document.head.append(link);

  const isShown = () => app.view === 'campaigns';

  function stopPolling() {
    if (state.poll) window.clearInterval(state.poll);
    state.poll = null;
  }

  // the agents a supervisor can name: everyone who takes calls, online or not (the team
  // directory); anyone else is typed in by username
  async function agents() {
    if (state.agents) return state.agents;
    const doc = await api('/api/v1/agents').catch(() => ({ items: [] }));
    state.agents = (doc.items || []).map((a) => ({ username: a.username, name: a.display_name || a.username }));
    return state.agents;
  }

  // checkboxes for the known agents (and whoever the draft names already), a field for others
  function agentPicker(id, legendKey, values, onValues, { nobody = false } = {}) {
    const known = new Map((state.agents || []).map((a) => [a.username, a.name]));
    for (const v of values) if (v && !known.has(v)) known.set(v, v);
    const options = [...known].map(([u, name]) => [u, name === u ? u : `${name} (${u})`]);
    if (nobody) options.push(['', t('campaigns.owner_nobody')]);
    let picked = values.filter((v) => known.has(v) || v === '');
    let typed = [];
    const emit = () => onValues([...new Set([...picked, ...typed])]);
    return h('div', { class: 'agent-picker' },
      checks(id, legendKey, options, picked, (v) => { picked = v; emit(); }),
      field(`${id}-others`, 'campaigns.other_agents', textInput('', (v) => { typed = list(v).map((x) => x.toLowerCase()); emit(); }, { autocomplete: 'off' }), t('campaigns.usernames_hint')));
  }

  // -- list --------------------------------------------------------------------------------------

  async function showList({ focusId = null } = {}) {
    stopPolling();
    state.mode = 'list';
    state.draft = null;
    clear(section).append(h('p', { class: 'muted' }, t('campaigns.loading')));
    try {
      const doc = await api('/api/v1/campaigns');
      state.items = (doc.items || []).slice(0, MAX_CAMPAIGNS);
      for (const c of state.items) state.results.set(c.id, c.figures || null);
    } catch (e) {
      clear(section).append(h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
      return;
    }
    if (state.mode !== 'list' || !isShown()) return;
    renderList();
    const el = focusId && document.getElementById(focusId);
    if (el) el.focus();
  }

  function statusBadge(status) {
    return h('span', { class: `badge camp-status camp-${status}` }, t(STATUS_LABEL[status] || 'campaigns.status_draft'));
  }

  function lifecycleButtons(c, where) {
    const out = [];
    const btn = (action, key, namedKey, cls = 'btn-secondary') => h('button', {
      type: 'button', class: `btn ${cls} btn-small`, id: `camp-${where}-${action}-${c.id}`, dataset: { action },
      'aria-label': t(namedKey, { name: c.name }), onclick: () => lifecycle(c, action, where),
    }, t(key));
    if (c.status === 'draft') out.push(btn('start', 'campaigns.start', 'campaigns.start_named', 'btn-primary'));
    if (c.status === 'running') out.push(btn('pause', 'campaigns.pause', 'campaigns.pause_named'));
    if (c.status === 'paused') out.push(btn('start', 'campaigns.resume', 'campaigns.resume_named', 'btn-primary'));
    if (c.status === 'running' || c.status === 'paused') out.push(btn('end', 'campaigns.end', 'campaigns.end_named', 'btn-ghost'));
    return out;
  }

  async function lifecycle(c, action, where) {
    if (action === 'end' && !window.confirm(t('campaigns.end_confirm', { name: c.name }))) return;
    try {
      const updated = await api(`/api/v1/campaigns/${c.id}/${action}`, {});
      const status = (updated && updated.status) || { start: 'running', pause: 'paused', end: 'ended' }[action];
      announce(t('campaigns.now_status', { name: c.name, status: t(STATUS_LABEL[status]) }));
      if (where === 'results') await showResults(c.id, { focusId: 'camp-results-heading' });
      else await showList({ focusId: `camp-open-${c.id}` });
    } catch (e) { toast(errorText(e), 'error'); }
  }

  function renderList() {
    const head = ['campaigns.name', 'campaigns.status', 'campaigns.entered', 'campaigns.active', 'campaigns.emails_sent', 'campaigns.calls_made', 'campaigns.converted', 'campaigns.revived', 'list.actions'];
    const body = h('tbody', {});
    if (!state.items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('campaigns.none'))));
    for (const c of state.items) {
      const f = keyFigures(state.results.get(c.id));
      const editable = c.status === 'draft' || c.status === 'paused';
      body.append(h('tr', { dataset: { campaignId: String(c.id), status: c.status } },
        h('th', { scope: 'row' },
          h('button', { type: 'button', class: 'link-button', id: `camp-open-${c.id}`, 'aria-label': t('campaigns.open_named', { name: c.name }), onclick: () => showResults(c.id) }, c.name),
          c.description ? h('div', { class: 'muted small camp-desc' }, c.description) : ''),
        h('td', {}, statusBadge(c.status), c.started_at ? h('div', { class: 'muted small' }, t('campaigns.since', { when: when(c.started_at) })) : ''),
        h('td', { class: 'figure', dataset: { figure: 'entered' } }, number(f.entered)),
        h('td', { class: 'figure', dataset: { figure: 'active' } }, number(f.active)),
        h('td', { class: 'figure', dataset: { figure: 'sent' } }, number(f.sent)),
        h('td', { class: 'figure', dataset: { figure: 'calls' } }, number(f.calls)),
        h('td', { class: 'figure', dataset: { figure: 'converted' } }, number(f.converted)),
        h('td', { class: 'figure', dataset: { figure: 'revived' } }, number(f.revived)),
        h('td', { class: 'camp-actions' },
          h('div', { role: 'group', 'aria-label': t('campaigns.actions_for', { name: c.name }) },
            editable ? h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': t('campaigns.edit_named', { name: c.name }), onclick: () => edit(c) }, t('campaigns.edit')) : '',
            ...lifecycleButtons(c, 'list')))));
    }
    clear(section).append(
      h('div', { class: 'camp-bar' },
        h('p', { class: 'muted' }, t('campaigns.intro')),
        h('button', { type: 'button', class: 'btn btn-primary', id: 'camp-new', onclick: () => edit(null) }, t('campaigns.new'))),
      h('div', { class: 'table-wrap' }, h('table', { class: 'calls campaigns', id: 'campaigns-table' },
        h('caption', { class: 'sr-only' }, t('nav.campaigns')),
        h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), body)),
      state.items.length >= MAX_CAMPAIGNS ? h('p', { class: 'muted' }, t('campaigns.cut', { n: MAX_CAMPAIGNS })) : '');
  }

  // -- the form -----------------------------------------------------------------------------------

  async function edit(c) {
    stopPolling();
    state.mode = 'edit';
    state.draft = c ? draftOf(c) : emptyDraft();
    await agents();
    if (state.mode !== 'edit') return;
    renderForm();
    const name = document.getElementById('camp-name');
    if (name) name.focus();
    countSoon(0);
  }

  function field(id, labelKey, input, hint) {
    input.id = id;
    const hintId = hint ? `${id}-hint` : null;
    if (hintId) input.setAttribute('aria-describedby', hintId);
    return h('div', { class: 'field' }, h('label', { for: id }, t(labelKey)), input, hint ? h('span', { class: 'muted small', id: hintId }, hint) : '');
  }

  function textInput(value, onValue, props = {}) {
    return h('input', { type: 'text', value: value ?? '', ...props, oninput: (ev) => onValue(ev.target.value) });
  }

  function numberInput(value, onValue, props = {}) {
    return h('input', { type: 'number', inputmode: 'decimal', value: value ?? '', ...props, oninput: (ev) => onValue(num(ev.target.value)) });
  }

  function dateInput(value, onValue) {
    return h('input', { type: 'date', value: value || '', oninput: (ev) => onValue(ev.target.value || null) });
  }

  function select(options, value, onValue, props = {}) {
    const el = h('select', { ...props, onchange: (ev) => onValue(ev.target.value) },
      options.map(([v, label]) => h('option', { value: v, selected: String(v) === String(value ?? '') }, label)));
    return el;
  }

  // a fieldset of checkboxes bound to an array of values
  function checks(id, legendKey, options, values, onValues, extra = {}) {
    const set = new Set(values);
    return h('fieldset', { class: 'checks', id },
      h('legend', {}, t(legendKey)),
      options.map(([v, label, note]) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', value: v, checked: set.has(v), dataset: extra.data ? extra.data(v) : {}, onchange: (ev) => {
          if (ev.target.checked) set.add(v); else set.delete(v);
          onValues(options.map((o) => o[0]).filter((x) => set.has(x)));
        } }),
        h('span', {}, label), note !== undefined ? h('span', { class: 'muted small reason-count', dataset: { reason: v } }, note) : '')));
  }

  function renderForm() {
    const d = state.draft;
    const seg = d.segment;
    const changed = () => countSoon();
    const form = h('form', { class: 'camp-form', id: 'camp-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); save(); } });
    const errors = h('div', { class: 'form-error', id: 'camp-errors', role: 'alert', tabindex: '-1', hidden: true });

    const general = h('fieldset', { class: 'camp-card' }, h('legend', {}, t('campaigns.general')),
      h('div', { class: 'camp-grid' },
        field('camp-name', 'campaigns.name', textInput(d.name, (v) => { d.name = v; }, { required: true, maxlength: 120, autocomplete: 'off' })),
        field('camp-language', 'campaigns.language', select(LANGS.map((l) => [l, t(LANG_LABEL[l])]), d.language, (v) => { d.language = v; }), t('campaigns.language_hint')),
        field('camp-reentry', 'campaigns.reentry_days', numberInput(d.reentry_days, (v) => { d.reentry_days = v; }, { min: 1, step: 1 }), t('campaigns.reentry_hint')),
        field('camp-email-cap', 'campaigns.daily_email_cap', numberInput(d.daily_email_cap, (v) => { d.daily_email_cap = v; }, { min: 1, step: 1 }), t('campaigns.cap_hint')),
        field('camp-call-cap', 'campaigns.daily_call_cap', numberInput(d.daily_call_cap, (v) => { d.daily_call_cap = v; }, { min: 1, step: 1 }), t('campaigns.cap_hint'))),
      field('camp-description', 'campaigns.description', h('textarea', { rows: 2, maxlength: 2000, oninput: (ev) => { d.description = ev.target.value; } }, d.description || '')));

    const count = h('div', { class: 'camp-count', id: 'camp-count', role: 'status', 'aria-live': 'polite' }, t('campaigns.counting'));
    const segment = h('fieldset', { class: 'camp-card', id: 'camp-segment', oninput: changed, onchange: changed }, h('legend', {}, t('campaigns.segment')),
      h('p', { class: 'muted small' }, t('campaigns.segment_hint')),
      count,
      h('div', { class: 'camp-grid' },
        checks('camp-statuses', 'campaigns.statuses', STATUSES.map((s) => [s, tId('lead_status', s, s)]), seg.statuses, (v) => { seg.statuses = v; }),
        checks('camp-lost-reasons', 'campaigns.lost_reasons', LOST_REASONS.map((r) => [r, reasonText(r), '']), seg.lost_reasons.filter((r) => LOST_REASONS.includes(r)),
          (v) => { seg.lost_reasons = [...v, ...seg.lost_reasons.filter((r) => !LOST_REASONS.includes(r))]; }),
        checks('camp-sources', 'campaigns.sources', SOURCES.map((s) => [s, t(SOURCE_LABEL[s])]), seg.sources, (v) => { seg.sources = v; }),
        agentPicker('camp-owners', 'campaigns.owners', seg.owners, (v) => { seg.owners = v; }, { nobody: true }),
      ),
      h('div', { class: 'camp-grid' },
        field('camp-other-reasons', 'campaigns.other_reasons', textInput(seg.lost_reasons.filter((r) => !LOST_REASONS.includes(r)).join(', '), (v) => {
          seg.lost_reasons = [...seg.lost_reasons.filter((r) => LOST_REASONS.includes(r)), ...list(v)];
        }), t('campaigns.comma_hint')),
        field('camp-lost-from', 'campaigns.lost_from', dateInput(seg.lost_from, (v) => { seg.lost_from = v; })),
        field('camp-lost-to', 'campaigns.lost_to', dateInput(seg.lost_to, (v) => { seg.lost_to = v; })),
        field('camp-score-min', 'campaigns.score_min', numberInput(seg.score_min, (v) => { seg.score_min = v; }, { min: 0, max: 10, step: 0.1 })),
        field('camp-score-max', 'campaigns.score_max', numberInput(seg.score_max, (v) => { seg.score_max = v; }, { min: 0, max: 10, step: 0.1 })),
        field('camp-activity-after', 'campaigns.last_activity_after', dateInput(seg.last_activity_after, (v) => { seg.last_activity_after = v; })),
        field('camp-activity-before', 'campaigns.last_activity_before', dateInput(seg.last_activity_before, (v) => { seg.last_activity_before = v; })),
        field('camp-tags', 'campaigns.tags', textInput(seg.tags.join(', '), (v) => { seg.tags = list(v); }), t('campaigns.tags_hint')),
        field('camp-countries', 'campaigns.countries', textInput(seg.countries.join(', '), (v) => { seg.countries = list(v).map((c) => c.toUpperCase()); }, { autocomplete: 'off' }), t('campaigns.countries_hint'))));

    const steps = h('fieldset', { class: 'camp-card', id: 'camp-steps' }, h('legend', {}, t('campaigns.steps')),
      h('ol', { class: 'camp-steps', id: 'camp-step-list' }),
      h('div', { class: 'camp-add' },
        field('camp-add-kind', 'campaigns.add_step_kind', select(Object.keys(STEP_LABEL).map((k) => [k, t(STEP_LABEL[k])]), 'email', () => {})),
        h('button', { type: 'button', class: 'btn btn-secondary', id: 'camp-add-step', onclick: () => {
          const kind = document.getElementById('camp-add-kind').value;
          d.steps.push(newStep(kind));
          renderSteps();
          focusStep(d.steps[d.steps.length - 1].uid);
        } }, t('campaigns.add_step'))));

    form.append(errors, general, segment, steps,
      h('div', { class: 'camp-form-actions' },
        h('button', { type: 'button', class: 'btn btn-secondary', id: 'camp-cancel', onclick: () => showList() }, t('action.cancel')),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'camp-save' }, t(d.id ? 'campaigns.save' : 'campaigns.create'))));
    clear(section).append(h('h2', { class: 'camp-title', id: 'camp-form-title' }, d.id ? t('campaigns.edit_title', { name: d.name }) : t('campaigns.new_title')), form);
    renderSteps();
  }

  function focusStep(stepUid) {
    const el = document.getElementById(`step-${stepUid}-title`);
    if (el) el.focus();
  }

  function stepName(i, s) {
    return t('campaigns.step_n', { n: i + 1, kind: t(STEP_LABEL[s.kind]) });
  }

  function renderSteps() {
    const d = state.draft;
    const ol = clear(document.getElementById('camp-step-list'));
    d.steps.forEach((s, i) => ol.append(stepCard(s, i)));
  }

  function move(i, by, which) {
    const d = state.draft;
    const j = i + by;
    if (j < 0 || j >= d.steps.length) return;
    [d.steps[i], d.steps[j]] = [d.steps[j], d.steps[i]];
    const moved = d.steps[j];
    renderSteps();
    announce(t('campaigns.moved', { step: stepName(j, moved) }));
    // focus stays with the control used, on the step's new place (or the other arrow at an end)
    const target = document.getElementById(`step-${moved.uid}-${which}`);
    const other = document.getElementById(`step-${moved.uid}-${which === 'up' ? 'down' : 'up'}`);
    (target && !target.disabled ? target : other && !other.disabled ? other : document.getElementById(`step-${moved.uid}-title`)).focus();
  }

  function remove(i) {
    const d = state.draft;
    const [gone] = d.steps.splice(i, 1);
    for (const s of d.steps) if (s.kind === 'branch') for (const k of ['then', 'otherwise']) if (s[k] === gone.uid) s[k] = null;
    renderSteps();
    announce(t('campaigns.removed', { step: stepName(i, gone) }));
    const next = d.steps[Math.min(i, d.steps.length - 1)];
    if (next) focusStep(next.uid);
    else document.getElementById('camp-add-kind').focus();
  }

  function stepCard(s, i) {
    const d = state.draft;
    const id = (name) => `step-${s.uid}-${name}`;
    const title = stepName(i, s);
    const tools = h('div', { class: 'step-tools', role: 'group', 'aria-label': t('campaigns.step_tools', { step: title }) },
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: id('up'), disabled: i === 0, 'aria-label': t('campaigns.move_up_named', { step: title }), onclick: () => move(i, -1, 'up') }, '↑ ', t('campaigns.move_up')),
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: id('down'), disabled: i === d.steps.length - 1, 'aria-label': t('campaigns.move_down_named', { step: title }), onclick: () => move(i, 1, 'down') }, '↓ ', t('campaigns.move_down')),
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: id('remove'), disabled: d.steps.length === 1, 'aria-label': t('campaigns.remove_named', { step: title }), onclick: () => remove(i) }, '✕ ', t('campaigns.remove')));
    const body = h('div', { class: 'step-body' });
    switch (s.kind) {
      case 'email': body.append(emailEditor(s, id)); break;
      case 'call': body.append(callEditor(s, id)); break;
      case 'wait':
        body.append(h('div', { class: 'camp-grid' },
          field(id('days'), 'campaigns.wait_days', numberInput(s.days, (v) => { s.days = v; }, { min: 0, max: 365, step: 0.5 })),
          field(id('hours'), 'campaigns.wait_hours', numberInput(s.hours, (v) => { s.hours = v; }, { min: 0, step: 1 }))),
        h('p', { class: 'muted small' }, t('campaigns.wait_hint')));
        break;
      case 'wait_until': {
        const dayName = (n) => new Intl.DateTimeFormat(language(), { weekday: 'long' }).format(new Date(Date.UTC(2024, 0, 1 + n)));
        body.append(h('div', { class: 'camp-grid' },
          field(id('weekday'), 'campaigns.weekday', select([['', t('campaigns.any_day')], ...[0, 1, 2, 3, 4, 5, 6].map((n) => [String(n), dayName(n)])], s.weekday ?? '', (v) => { s.weekday = num(v); })),
          field(id('hour'), 'campaigns.hour', numberInput(s.hour, (v) => { s.hour = v; }, { min: 0, max: 23, step: 1 })),
          field(id('minute'), 'campaigns.minute', numberInput(s.minute, (v) => { s.minute = v; }, { min: 0, max: 59, step: 1 }))),
        h('p', { class: 'muted small' }, t('campaigns.wait_until_hint')));
        break;
      }
      case 'branch': body.append(branchEditor(s, i, id)); break;
      case 'set': body.append(setEditor(s, id)); break;
      default: body.append(h('p', { class: 'muted small' }, t('campaigns.stop_hint')));
    }
    return h('li', { class: `camp-step kind-${s.kind}`, dataset: { kind: s.kind, uid: s.uid } },
      h('div', { class: 'step-head' }, h('h3', { id: id('title'), tabindex: '-1' }, title), tools), body);
  }

  function emailEditor(s, id) {
    const out = h('div', { class: 'email-langs' });
    for (const l of LANGS) {
      const tpl = s.templates[l];
      const idl = (n) => id(`${l}-${n}`);
      const preview = h('div', { class: 'email-preview', id: idl('preview'), hidden: true });
      out.append(h('fieldset', { class: 'email-lang', lang: l, dataset: { lang: l } },
        h('legend', {}, t('campaigns.email_version', { language: t(LANG_LABEL[l]) })),
        field(idl('subject'), 'campaigns.subject', textInput(tpl.subject, (v) => { tpl.subject = v; }, { maxlength: 300 })),
        field(idl('html'), 'campaigns.html', h('textarea', { rows: 6, class: 'code', spellcheck: 'false', oninput: (ev) => { tpl.html = ev.target.value; } }, tpl.html), t('campaigns.html_hint')),
        field(idl('text'), 'campaigns.text', h('textarea', { rows: 3, oninput: (ev) => { tpl.text = ev.target.value; } }, tpl.text), t('campaigns.text_hint')),
        h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: idl('preview-button'), 'aria-controls': idl('preview'),
          'aria-label': t('campaigns.preview_named', { language: t(LANG_LABEL[l]) }), onclick: () => previewEmail(s, l, preview) }, t('campaigns.preview')),
        preview));
    }
    return out;
  }

  async function previewEmail(s, l, box) {
    box.hidden = false;
    const tpl = s.templates[l];
    if (!tpl.subject.trim() || !tpl.html.trim()) {
      clear(box).append(h('p', { class: 'form-error', role: 'alert' }, t('campaigns.preview_empty')));
      return;
    }
    clear(box).append(h('p', { class: 'muted small', role: 'status' }, t('campaigns.previewing')));
    try {
      const r = await api('/api/v1/campaigns/preview', { templates: { [l]: { subject: tpl.subject, html: tpl.html, text: tpl.text } }, language: l });
      const textId = `${box.id}-text`;
      const frame = h('iframe', { sandbox: '', class: 'mail-frame', title: t('campaigns.preview_frame', { subject: r.subject }), srcdoc: r.html || '' });
      const text = h('pre', { class: 'mail-text', id: textId, hidden: true }, r.text || '');
      const toggle = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-pressed': 'false', 'aria-controls': textId, onclick: () => {
        const on = text.hidden;
        text.hidden = !on;
        frame.hidden = on;
        toggle.setAttribute('aria-pressed', String(on));
      } }, t('campaigns.plain_text'));
      clear(box).append(h('div', { class: 'mail-head' }, h('span', { class: 'muted small' }, t('campaigns.subject_is')), ' ', h('strong', {}, r.subject || ''), toggle),
        h('p', { class: 'muted small' }, t('campaigns.preview_sample')), frame, text);
    } catch (e) {
      clear(box).append(h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
    }
  }

  function callEditor(s, id) {
    const poolBox = h('div', { id: id('pool-box'), hidden: s.assign === 'owner' },
      agentPicker(id('pool'), 'campaigns.pool', s.pool, (v) => { s.pool = v; }));
    return h('div', {},
      h('div', { class: 'camp-grid' },
        field(id('title-input'), 'campaigns.call_title', textInput(s.title, (v) => { s.title = v; }, { maxlength: 200 })),
        field(id('assign'), 'campaigns.assign', select(Object.keys(ASSIGN_LABEL).map((k) => [k, t(ASSIGN_LABEL[k])]), s.assign, (v) => { s.assign = v; poolBox.hidden = v === 'owner'; })),
        field(id('expire'), 'campaigns.expire_days', numberInput(s.expire_days, (v) => { s.expire_days = v; }, { min: 0.5, max: 90, step: 0.5 }))),
      poolBox);
  }

  function branchEditor(s, i, id) {
    const d = state.draft;
    const c = s.condition;
    const later = d.steps.slice(i + 1).map((x, k) => [x.uid, stepName(i + 1 + k, x)]);
    const targets = [['', t('campaigns.next_step')], ['stop', t('campaigns.target_stop')], ...later];
    for (const k of ['then', 'otherwise']) if (s[k] && s[k] !== 'stop' && !later.some(([u]) => u === s[k])) s[k] = null;
    const valueBox = h('div', { class: 'cond-value' });
    const fill = () => {
      clear(valueBox);
      if (c.kind === 'score_at_least') valueBox.append(field(id('score'), 'campaigns.cond_score', numberInput(c.value, (v) => { c.value = v; }, { min: 0, max: 10, step: 0.1 })));
      if (c.kind === 'status') valueBox.append(checks(id('statuses'), 'campaigns.cond_statuses', STATUSES.map((x) => [x, tId('lead_status', x, x)]), c.values, (v) => { c.values = v; }));
      if (c.kind === 'disposition') {
        const disp = (app.dispositions || []).map((x) => [x.id, tId('disposition', x.id, x.label)]);
        valueBox.append(disp.length
          ? checks(id('dispositions'), 'campaigns.cond_dispositions', disp, c.values, (v) => { c.values = v; })
          : field(id('dispositions'), 'campaigns.cond_dispositions', textInput(c.values.join(', '), (v) => { c.values = list(v); })));
      }
    };
    fill();
    return h('div', {},
      h('div', { class: 'camp-grid' },
        field(id('cond'), 'campaigns.condition', select(Object.keys(CONDITION_LABEL).map((k) => [k, t(CONDITION_LABEL[k])]), c.kind, (v) => { c.kind = v; c.values = []; fill(); })),
        field(id('then'), 'campaigns.then', select(targets, s.then ?? '', (v) => { s.then = v || null; })),
        field(id('otherwise'), 'campaigns.otherwise', select(targets, s.otherwise ?? '', (v) => { s.otherwise = v || null; }))),
      valueBox);
  }

  function setEditor(s, id) {
    const owners = [['', t('campaigns.unchanged')], ...(state.agents || []).map((a) => [a.username, a.name])];
    return h('div', { class: 'camp-grid' },
      field(id('status'), 'campaigns.set_status', select([['', t('campaigns.unchanged')], ...STATUSES.map((x) => [x, tId('lead_status', x, x)])], s.status ?? '', (v) => { s.status = v || null; })),
      field(id('owner'), 'campaigns.set_owner', select(owners, s.owner ?? '', (v) => { s.owner = v || null; })),
      field(id('tags'), 'campaigns.add_tags', textInput((s.add_tags || []).join(', '), (v) => { s.add_tags = list(v); }), t('campaigns.comma_hint')));
  }

  // -- the live count ------------------------------------------------------------------------------

  function countSoon(delay = COUNT_DELAY) {
    window.clearTimeout(state.countTimer);
    state.countTimer = window.setTimeout(countNow, delay);
  }

  async function countNow() {
    const d = state.draft;
    if (!d || state.mode !== 'edit') return;
    const seq = ++state.countSeq;
    const seg = segmentBody(d.segment);
    // the reasons' own counts: the same segment with any lost reason, so each box says how many
    const { lost_reasons: _, ...anyReason } = seg;
    try {
      const [r, byReason] = await Promise.all([
        api('/api/v1/segments/count', seg),
        seg.lost_reasons ? api('/api/v1/segments/count', anyReason) : null,
      ]);
      if (seq !== state.countSeq || state.mode !== 'edit') return; // a newer count is on its way
      const box = document.getElementById('camp-count');
      if (!box) return;
      box.dataset.total = String(r.total);
      clear(box).append(h('strong', { class: 'count-total' }, t('campaigns.count_total', { count: r.total })), ' ',
        h('span', { class: 'muted' }, t('campaigns.count_reach', { email: r.emailable, call: r.callable })));
      const reasons = (byReason || r).by_lost_reason || {};
      for (const el of document.querySelectorAll('#camp-lost-reasons .reason-count')) {
        const n = reasons[el.dataset.reason] || 0;
        el.textContent = `(${number(n)})`;
        el.dataset.count = String(n);
      }
    } catch (e) {
      if (seq !== state.countSeq) return;
      const box = document.getElementById('camp-count');
      if (box) { delete box.dataset.total; box.textContent = errorText(e); }
    }
  }

  async function save() {
    const d = state.draft;
    const errors = document.getElementById('camp-errors');
    errors.hidden = true;
    if (!d.name.trim()) {
      errors.hidden = false;
      errors.textContent = t('campaigns.name_required');
      document.getElementById('camp-name').focus();
      return;
    }
    const body = campaignBody(d);
    try {
      const saved = d.id ? await api(`/api/v1/campaigns/${d.id}`, body, 'PUT') : await api('/api/v1/campaigns', body);
      toast(t('campaigns.saved', { name: saved.name || body.name }), 'info');
      await showList({ focusId: `camp-open-${saved.id}` });
    } catch (e) {
      errors.hidden = false;
      const where = e.details && e.details.field;
      errors.textContent = where ? t('campaigns.invalid_where', { where: placeOf(where), reason: e.details.reason || e.message }) : errorText(e);
      errors.focus();
    }
  }

  // "steps[2].templates" -> "Step 3: Send e-mail (templates)": where the server found the fault
  function placeOf(path) {
    const d = state.draft;
    const m = /^steps\[(\d+)\]\.?(.*)$/.exec(path);
    if (m && d.steps[Number(m[1])]) return `${stepName(Number(m[1]), d.steps[Number(m[1])])}${m[2] ? ` (${m[2]})` : ''}`;
    if (path.startsWith('segment')) return `${t('campaigns.segment')} (${path.replace(/^segment\.?/, '')})`;
    return path;
  }

  // -- results -------------------------------------------------------------------------------------

  function bar(value, max, label) {
    // an inline SVG bar: drawn with attributes, so the strict CSP (no inline styles) holds
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'bar');
    svg.setAttribute('viewBox', '0 0 100 10');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    const track = document.createElementNS(ns, 'rect');
    track.setAttribute('class', 'bar-track');
    track.setAttribute('width', '100');
    track.setAttribute('height', '10');
    const fill = document.createElementNS(ns, 'rect');
    fill.setAttribute('class', 'bar-fill');
    fill.setAttribute('width', String(max ? Math.max(0, Math.min(100, (100 * value) / max)) : 0));
    fill.setAttribute('height', '10');
    svg.append(track, fill);
    if (label) svg.dataset.label = label;
    return svg;
  }

  function stepFigures(st) {
    const counts = st.counts || st.by_status || {};
    const reached = typeof st.reached === 'number' ? st.reached : typeof st.runs === 'number' ? st.runs : sumValues(counts);
    return { counts, reached };
  }

  async function showResults(id, { focusId = null, quiet = false } = {}) {
    if (!quiet) stopPolling();
    state.mode = 'results';
    state.shown = id;
    try {
      const [c, r] = await Promise.all([api(`/api/v1/campaigns/${id}`), api(`/api/v1/campaigns/${id}/results`)]);
      if (state.mode !== 'results' || state.shown !== id || !isShown()) return;
      const hadFocus = section.contains(document.activeElement) ? document.activeElement.id : null;
      renderResults(c, r);
      const el = document.getElementById(focusId || (quiet ? hadFocus : 'camp-results-heading'));
      if (el) el.focus();
      // the open list of who left: read again when its count moved (or when asked), in place
      const open = state.left;
      if (open && !open.loading && (!quiet || open.count !== (state.leftCounts[open.reason] || 0))) loadLeft();
    } catch (e) {
      if (!quiet) toast(errorText(e), 'error');
      return;
    }
    if (!state.poll) state.poll = window.setInterval(() => { if (isShown() && state.mode === 'results') showResults(state.shown, { quiet: true }); else stopPolling(); }, POLL_MS);
  }

  function renderResults(c, r) {
    const def = c.definition || {};
    const steps = def.steps || [];
    const f = keyFigures(r);
    const tile = (key, value, figureName) => h('div', { class: 'camp-tile', dataset: { figure: figureName } }, h('span', { class: 'tile-value' }, number(value)), h('span', { class: 'tile-label' }, t(key)));
    const tiles = h('div', { class: 'camp-tiles' },
      tile('campaigns.entered', f.entered, 'entered'), tile('campaigns.active', f.active, 'active'),
      tile('campaigns.emails_sent', f.sent, 'sent'), tile('campaigns.emails_failed', f.failed + f.bounced, 'failed'),
      tile('campaigns.unsubscribed', f.unsubscribed, 'unsubscribed'), tile('campaigns.calls_made', f.calls, 'calls'),
      tile('campaigns.calls_answered', f.answered, 'answered'), tile('campaigns.converted', f.converted, 'converted'),
      tile('campaigns.revived', f.revived, 'revived'));

    // the funnel: how many members each step reached, against the members who entered
    const perStep = (r && (r.steps || r.per_step)) || [];
    const funnelBody = h('tbody', {});
    const max = Math.max(f.entered, ...perStep.map((st) => stepFigures(st).reached), 1);
    steps.forEach((s, i) => {
      const st = perStep.find((x) => x.step === i || x.index === i) || perStep[i] || {};
      const { counts, reached } = stepFigures(st);
      const detail = Object.entries(counts).filter(([, n]) => n).map(([k, n]) => `${RUN_LABEL[k] ? t(RUN_LABEL[k]) : k} ${number(n)}`);
      for (const [k, key] of [['opened', 'campaigns.opened'], ['replied', 'campaigns.replied'], ['answered', 'campaigns.answered_calls']]) if (st[k]) detail.push(`${t(key)} ${number(st[k])}`);
      const disp = st.dispositions || {};
      for (const [k, n] of Object.entries(disp)) if (n) detail.push(`${tId('disposition', k, k)} ${number(n)}`);
      funnelBody.append(h('tr', { dataset: { step: String(i), reached: String(reached) } },
        h('th', { scope: 'row' }, stepName(i, s)),
        h('td', { class: 'bar-cell' }, bar(reached, max)),
        h('td', { class: 'figure' }, number(reached), h('span', { class: 'muted small' }, ` · ${pct(reached, f.entered)}`)),
        h('td', { class: 'muted small' }, detail.join(' · ') || '—')));
    });
    if (!steps.length) funnelBody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted center' }, '—')));

    // lost deals revived, per lost reason (entered with that reason vs revived)
    const totals = (r && r.totals) || r || {};
    const revived = totals.revived_by_lost_reason || (r && r.revived_by_lost_reason) || {};
    const enteredBy = totals.entered_by_lost_reason || (r && r.entered_by_lost_reason) || {};
    const reasons = [...new Set([...Object.keys(enteredBy), ...Object.keys(revived)])];
    const revMax = Math.max(1, ...reasons.map((k) => enteredBy[k] || 0));
    const revivedBody = h('tbody', {});
    if (!reasons.length) revivedBody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted center' }, t('campaigns.no_lost'))));
    for (const k of reasons) {
      const n = revived[k] || 0;
      const of = enteredBy[k] || 0;
      revivedBody.append(h('tr', { dataset: { reason: k } },
        h('th', { scope: 'row' }, reasonText(k)),
        h('td', { class: 'bar-cell' }, bar(n, revMax)),
        h('td', { class: 'figure' }, t('campaigns.revived_of', { n, of })),
        h('td', { class: 'figure' }, pct(n, of))));
    }

    state.leftCounts = (r && (r.left || r.left_by_reason)) || {};
    if (state.left && (state.left.cid !== c.id || !state.leftCounts[state.left.reason])) state.left = null;

    const table = (id, captionKey, headKeys, body) => h('div', { class: 'table-wrap' }, h('table', { class: 'calls camp-results', id },
      h('caption', { class: 'sr-only' }, t(captionKey)), h('thead', {}, h('tr', {}, headKeys.map((k) => h('th', { scope: 'col' }, t(k))))), body));

    clear(section).append(
      h('div', { class: 'camp-bar' },
        h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: 'camp-back', onclick: () => showList({ focusId: `camp-open-${c.id}` }) }, '← ', t('campaigns.back')),
        h('div', { class: 'camp-bar-actions' },
          (c.status === 'draft' || c.status === 'paused') ? h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'camp-edit', onclick: () => edit(c) }, t('campaigns.edit')) : '',
          ...lifecycleButtons(c, 'results'),
          h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'camp-refresh', onclick: () => showResults(c.id, { focusId: 'camp-refresh' }) }, t('campaigns.refresh')))),
      h('h2', { class: 'camp-title', id: 'camp-results-heading', tabindex: '-1', dataset: { status: c.status } }, c.name, ' ', statusBadge(c.status)),
      c.description ? h('p', { class: 'muted' }, c.description) : '',
      h('p', { class: 'muted small' }, t('campaigns.updated_every', { s: POLL_MS / 1000 })),
      tiles,
      h('h3', { class: 'section-title' }, t('campaigns.funnel')),
      table('camp-funnel', 'campaigns.funnel', ['campaigns.step', 'campaigns.reached_bar', 'campaigns.reached', 'campaigns.detail'], funnelBody),
      h('h3', { class: 'section-title' }, t('campaigns.revived_by_reason')),
      table('camp-revived', 'campaigns.revived_by_reason', ['campaigns.lost_reason', 'campaigns.revived_bar', 'campaigns.revived', 'campaigns.revived_rate'], revivedBody),
      leftBlock());
  }

  // -- who left, for one reason --------------------------------------------------------------------

  const leftLabel = (k) => (LEFT_LABEL[k] ? t(LEFT_LABEL[k]) : k);

  // each reason's count is a button that opens, below, the list of who left for it
  function leftBlock() {
    const counts = Object.entries(state.leftCounts).filter(([, n]) => n);
    const open = state.left;
    const block = h('div', { class: 'camp-left-block', id: 'camp-left-block' });
    if (!counts.length) return block;
    block.append(h('h3', { class: 'section-title', id: 'camp-left-heading' }, t('campaigns.left')),
      h('ul', { class: 'camp-left', 'aria-labelledby': 'camp-left-heading' }, counts.map(([k, n]) => {
        const on = Boolean(open && open.reason === k);
        return h('li', { dataset: { reason: k } },
          h('button', {
            type: 'button', class: 'camp-left-toggle', id: `camp-left-${k}`, dataset: { reason: k, count: String(n) },
            'aria-expanded': String(on), 'aria-controls': on ? 'camp-left-list' : null, onclick: () => toggleLeft(k),
          }, h('span', { class: 'chevron', 'aria-hidden': 'true' }, on ? '▾' : '▸'), ' ', h('strong', {}, number(n)), ' ', leftLabel(k)));
      })));
    if (open) block.append(leftList(open));
    return block;
  }

  function leftList(open) {
    const title = t('campaigns.left_who', { reason: leftLabel(open.reason) });
    const total = state.leftCounts[open.reason] || 0;
    const rows = open.items.map((m) => {
      const name = m.name || `#${m.person_id}`;
      return h('tr', { dataset: { memberId: String(m.id), personId: String(m.person_id), kind: m.kind || 'lead' } },
        h('th', { scope: 'row' },
          h('button', {
            type: 'button', class: 'link-button', id: `camp-left-person-${m.id}`, 'aria-label': t('records.open_named', { name }),
            onclick: () => app.openRecord && app.openRecord(m.kind || 'lead', m.person_id),
          }, name)),
        h('td', {}, m.left_at ? h('time', { datetime: new Date(m.left_at * 1000).toISOString() }, dateTime(m.left_at)) : '—'));
    });
    return h('div', { class: 'camp-left-list', id: 'camp-left-list', role: 'region', 'aria-labelledby': 'camp-left-list-title', dataset: { reason: open.reason, shown: String(open.items.length) } },
      h('h4', { class: 'camp-left-title', id: 'camp-left-list-title' }, title),
      open.reason === 'replied' ? h('p', { class: 'camp-left-hint' }, t('campaigns.left_replied_hint')) : '',
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'calls camp-left-table', id: 'camp-left-table' },
        h('caption', { class: 'sr-only' }, title),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('campaigns.left_name')), h('th', { scope: 'col' }, t('campaigns.left_at')))),
        h('tbody', {}, rows))) : '',
      !rows.length && !open.loading && !open.error ? h('p', { class: 'muted' }, t('campaigns.left_nobody')) : '',
      open.loading && !rows.length ? h('p', { class: 'muted' }, t('campaigns.left_loading')) : '',
      open.error ? h('p', { class: 'form-error', role: 'alert' }, open.error) : '',
      open.next ? h('div', { class: 'camp-left-more' },
        h('span', { class: 'muted small' }, t('campaigns.left_shown', { shown: open.items.length, count: Math.max(total, open.items.length) })), ' ',
        h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'camp-left-more', disabled: open.loading, onclick: () => loadLeft({ more: true }) }, t('campaigns.left_more'))) : '');
  }

  // draw the block again where it is, keeping the focus on the same control
  function renderLeft(focusId = null) {
    const block = document.getElementById('camp-left-block');
    if (!block) return;
    const had = block.contains(document.activeElement) ? document.activeElement.id : null;
    block.replaceWith(leftBlock());
    const el = document.getElementById(focusId || had);
    if (el) el.focus();
  }

  function toggleLeft(reason) {
    state.leftSeq++; // whatever is on its way for another list is dropped
    if (state.left && state.left.reason === reason) {
      state.left = null;
      renderLeft();
      return;
    }
    state.left = { cid: state.shown, reason, items: [], next: null, count: null, loading: false, error: null };
    renderLeft();
    loadLeft({ announceIt: true });
  }

  // the first page (or as many rows as are shown, on a refresh), or the next one with `more`
  async function loadLeft({ more = false, announceIt = false } = {}) {
    const open = state.left;
    if (!open) return;
    const seq = ++state.leftSeq;
    const count = state.leftCounts[open.reason] || 0;
    const params = new URLSearchParams({ left_reason: open.reason });
    if (more && open.next) {
      params.set('limit', String(LEFT_PAGE));
      params.set('cursor', open.next);
    } else params.set('limit', String(Math.min(MAX_LEFT_PAGE, Math.max(LEFT_PAGE, open.items.length))));
    open.loading = true;
    if (more || !open.items.length) renderLeft(); // a refresh keeps the rows on screen meanwhile
    let page = null;
    let error = null;
    try { page = await api(`/api/v1/campaigns/${open.cid}/members?${params}`); } catch (e) { error = errorText(e); }
    if (seq !== state.leftSeq || state.left !== open) return; // closed, or another list asked for
    open.loading = false;
    open.error = error;
    let focusId = null;
    if (page) {
      const items = page.items || [];
      if (more && items.length) focusId = `camp-left-person-${items[0].id}`; // the first new row
      open.items = more ? [...open.items, ...items] : items;
      open.next = page.next_cursor || null;
      if (!more) open.count = count;
    }
    if (!isShown() || state.mode !== 'results' || state.shown !== open.cid) return;
    renderLeft(focusId);
    if (page && (more || announceIt)) announce(t('campaigns.left_listed', { count: open.items.length, reason: leftLabel(open.reason) }));
  }

  section = registerView('campaigns', {
    titleKey: 'nav.campaigns',
    roles: ['supervisor', 'admin'],
    onShow: () => {
      if (state.mode === 'edit' && state.draft) { renderForm(); countSoon(0); } // a language change keeps the draft
      else if (state.mode === 'results' && state.shown !== null) showResults(state.shown);
      else showList();
    },
  });
  return { showList, showResults };
}

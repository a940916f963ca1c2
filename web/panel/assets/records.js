// Contact search and the record view. Search asks /api/v1/contacts and /api/v1/leads with the
// agent's words (a name, a company, an e-mail or a number typed any way); a record shows the
// person, their timeline (the 20 newest activities, the open follow-ups), an edit form (names,
// company, phones) and, for a lead, the qualification script and the conversion to a contact.
// Everything from the CRM is put on the page as text.
import { api, clear, h } from './dom.js';
import { activityText, countryName, language, number, t, tId, when } from './i18n.js';
import { buildQualification } from './qualify.js';
import { insightList } from './insight.js';
import { announce, callButton, errorText, toast } from './ui.js';
import { registerView } from './views.js';

const LIMIT = 25; // per kind: a search is for finding one person, not for browsing
const STAGES = ['qualification', 'proposal', 'negotiation', 'won', 'lost'];
const plural = (kind) => (kind === 'lead' ? 'leads' : 'contacts');

export function installRecords(app) {
  let section = null;
  const ui = {};

  function field(name, key, input) {
    const id = `rec-${name}`;
    input.id = id;
    input.name = name;
    return h('div', { class: 'field' }, h('label', { for: id, 'data-i18n': key }, t(key)), input);
  }

  // -- search -----------------------------------------------------------------------------------

  async function search(ev) {
    if (ev) ev.preventDefault();
    const q = ui.q.value.trim();
    const kind = ui.kind.value;
    ui.record.hidden = true;
    ui.results.hidden = false;
    if (!q) {
      ui.status.textContent = t('records.type_something');
      clear(ui.list);
      return;
    }
    ui.status.textContent = t('records.searching');
    try {
      const kinds = kind ? [kind] : ['contact', 'lead'];
      const pages = await Promise.all(kinds.map((k) => api(`/api/v1/${plural(k)}?${new URLSearchParams({ q, limit: String(LIMIT) })}`)));
      const items = pages.flatMap((p) => p.items).sort((a, b) => String(a.name).localeCompare(String(b.name)));
      ui.items = items;
      clear(ui.list).append(...items.map(resultRow));
      ui.status.textContent = t('records.found', { count: items.length });
      announce(ui.status.textContent);
    } catch (e) {
      ui.status.textContent = errorText(e);
    }
  }

  function resultRow(p) {
    const name = p.name || p.company || `#${p.id}`;
    const phone = (p.phones || [])[0];
    const email = (p.emails || [])[0];
    return h('li', { class: 'result', dataset: { personId: String(p.id), kind: p.kind } },
      h('div', {},
        h('button', { type: 'button', class: 'link-button result-name', 'aria-label': t('records.open_named', { name }), onclick: () => openRecord(p.kind, p.id) }, name),
        ' ', h('span', { class: `badge kind-${p.kind}` }, tId('kind', p.kind, p.kind)),
        p.status ? [' ', h('span', { class: `badge status-${p.status}` }, tId('lead_status', p.status, p.status))] : '',
        h('div', { class: 'muted small' }, [p.company && p.name ? p.company : '', phone ? phone.raw || phone.e164 : '', email ? email.email : ''].filter(Boolean).join(' · '))),
      phone && !p.do_not_call && !phone.do_not_call ? callButton(phone.e164, name) : '');
  }

  // -- the record -------------------------------------------------------------------------------

  async function openRecord(kind, id) {
    if (app.view !== 'search') app.show('search');
    ui.results.hidden = true;
    ui.record.hidden = false;
    clear(ui.record).append(h('p', { class: 'muted', role: 'status' }, t('records.loading')));
    try {
      const p = await api(`/api/v1/${plural(kind)}/${encodeURIComponent(id)}`);
      renderRecord(p, true);
    } catch (e) {
      clear(ui.record).append(backButton(), h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
    }
  }
  app.openRecord = openRecord;

  function backButton() {
    return h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: 'record-back', onclick: () => { ui.record.hidden = true; ui.results.hidden = false; ui.q.focus(); } }, `← ${t('records.back')}`);
  }

  function renderRecord(p, focus = false) {
    ui.last = p;
    const name = p.name || p.company || `#${p.id}`;
    const heading = h('h2', { class: 'record-title', id: 'record-title', tabindex: '-1' }, name);
    const facts = [
      [t('records.kind'), tId('kind', p.kind, p.kind)],
      [t('card.status'), p.status ? tId('lead_status', p.status, p.status) : '—'],
      [t('card.score'), p.score !== null && p.score !== undefined ? t('card.score_of_ten', { score: number(p.score, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) }) : '—'],
      [t('person.company'), p.company || '—'],
      [t('card.owner'), p.owner || t('card.unassigned')],
      [t('card.country'), countryName(p.country) || '—'],
    ];
    const phones = h('ul', { class: 'plain' }, (p.phones || []).map((x) => h('li', {}, h('span', { class: 'num' }, x.raw || x.e164), ' ',
      x.do_not_call || p.do_not_call ? h('span', { class: 'badge dnc' }, t('card.do_not_call')) : callButton(x.e164, name))));
    const emails = h('ul', { class: 'plain' }, (p.emails || []).map((x) => h('li', {}, x.email)));
    const activities = (p.activities || []);
    const followUps = (p.follow_ups || []);
    const now = Date.now() / 1000;
    clear(ui.record).append(
      backButton(),
      h('article', { class: 'record', 'aria-labelledby': 'record-title', dataset: { personId: String(p.id), kind: p.kind } },
        h('header', { class: 'record-head' }, heading, h('span', { class: `badge kind-${p.kind}` }, tId('kind', p.kind, p.kind)), p.do_not_call ? h('span', { class: 'badge dnc' }, t('card.do_not_call')) : ''),
        h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
        h('div', { class: 'columns' },
          h('section', {}, h('h3', {}, t('records.phones')), (p.phones || []).length ? phones : h('p', { class: 'muted' }, '—'),
            h('h3', {}, t('records.emails')), (p.emails || []).length ? emails : h('p', { class: 'muted' }, '—')),
          h('section', {}, h('h3', {}, t('records.timeline')),
            activities.length
              ? h('ul', { class: 'timeline' }, activities.map((a) => h('li', {}, h('span', { class: `tl-kind tl-${a.kind}` }, tId('activity', a.kind, a.kind)), h('span', { class: 'tl-text' }, activityText(a)), h('time', {}, when(a.at)))))
              : h('p', { class: 'muted' }, t('card.no_interactions')),
            h('h3', {}, t('card.open_follow_ups')),
            followUps.length
              ? h('ul', { class: 'timeline' }, followUps.map((f) => h('li', {}, h('span', { class: 'tl-text' }, f.title), h('time', {}, f.due_at < now ? `${t('followups.overdue')} · ` : '', when(f.due_at)))))
              : h('p', { class: 'muted' }, t('card.nothing_pending')))),
        insightSection(p),
        editForm(p),
        p.kind === 'lead' ? buildQualification(p.id, 'rec-q', { collapsed: false }).el : '',
        p.kind === 'lead' ? convertForm(p) : ''));
    if (focus) heading.focus();
  }

  // every customer metric with its reason (GET /api/v1/people/{id}/metrics), loaded after the
  // record so a slow computation never holds the record up
  function insightSection(p) {
    const body = h('div', { role: 'status' }, h('p', { class: 'muted' }, t('intel.loading')));
    const section = h('section', { class: 'record-insight', id: 'record-insight', 'aria-labelledby': 'record-insight-title' },
      h('h3', { id: 'record-insight-title' }, t('intel.title')), body);
    api(`/api/v1/people/${encodeURIComponent(p.id)}/metrics?lang=${encodeURIComponent(language())}`).then((doc) => {
      clear(body).append(insightList(doc.metrics, 'record-insight-list'),
        doc.computed_at ? h('p', { class: 'muted small' }, t('intel.computed_at', { when: when(doc.computed_at) })) : '');
    }).catch(() => {
      clear(body).append(h('p', { class: 'muted' }, t('intel.unavailable')));
    });
    return section;
  }

  function editForm(p) {
    const first = h('input', { autocomplete: 'off', value: p.first_name || '' });
    const last = h('input', { autocomplete: 'off', value: p.last_name || '' });
    const company = h('input', { autocomplete: 'off', value: p.company || '' });
    const phones = h('textarea', { rows: 3 });
    phones.value = (p.phones || []).map((x) => x.raw || x.e164).join('\n');
    const status = h('p', { role: 'status', class: 'muted' });
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, t('action.save'));
    const form = h('form', { class: 'edit-form', id: 'record-edit', 'aria-labelledby': 'record-edit-title' },
      h('h3', { id: 'record-edit-title' }, t('records.edit')),
      h('div', { class: 'grid2' }, field('first_name', 'person.first_name', first), field('last_name', 'person.last_name', last),
        field('company', 'person.company', company), field('phones', 'records.phones_one_per_line', phones)),
      h('div', { class: 'actions' }, save), status, error);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      save.disabled = true;
      const body = {
        first_name: first.value.trim(), last_name: last.value.trim(), company: company.value.trim(),
        phones: phones.value.split('\n').map((x) => x.trim()).filter(Boolean),
      };
      try {
        const updated = await api(`/api/v1/${plural(p.kind)}/${encodeURIComponent(p.id)}`, body, 'PATCH');
        toast(t('records.saved', { name: updated.name || updated.company || '' }), 'info');
        await openRecord(p.kind, p.id);
      } catch (e) {
        error.textContent = errorText(e);
        error.hidden = false;
      } finally { save.disabled = false; }
    });
    return form;
  }

  function convertForm(p) {
    const kind = h('select', {}, h('option', { value: 'b2b' }, t('convert.b2b')), h('option', { value: 'b2c' }, t('convert.b2c')));
    const account = h('input', { autocomplete: 'off', value: p.company || '' });
    const title = h('input', { autocomplete: 'off' });
    const amount = h('input', { type: 'number', min: '0', step: '0.01', inputmode: 'decimal' });
    const currency = h('input', { value: 'EUR', maxlength: '3', autocomplete: 'off' });
    const stage = h('select', {}, STAGES.map((s) => h('option', { value: s }, tId('stage', s, s))));
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const done = h('p', { class: 'created', role: 'status', hidden: true });
    const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'convert-send' }, t('convert.send'));
    const form = h('form', { class: 'convert-form', id: 'record-convert', 'aria-labelledby': 'convert-title' },
      h('h3', { id: 'convert-title' }, t('convert.title')),
      h('p', { class: 'muted small' }, t('convert.intro')),
      h('div', { class: 'grid2' }, field('convert_kind', 'convert.kind', kind), field('account_name', 'convert.account_name', account),
        field('deal_title', 'convert.deal_title', title), field('deal_amount', 'convert.deal_amount', amount),
        field('deal_currency', 'convert.deal_currency', currency), field('deal_stage', 'convert.deal_stage', stage)),
      h('div', { class: 'actions' }, send), error, done);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      send.disabled = true;
      const body = { kind: kind.value };
      if (account.value.trim()) body.account_name = account.value.trim();
      if (title.value.trim() || amount.value) {
        body.deal = { title: title.value.trim(), currency: currency.value.trim().toUpperCase() || 'EUR', stage: stage.value };
        if (amount.value) body.deal.amount = Number(amount.value);
      }
      try {
        const r = await api(`/panel/api/people/${encodeURIComponent(p.id)}/convert`, body);
        const name = (r.person && (r.person.name || r.person.company)) || p.name;
        toast(t('convert.done', { name }), 'info');
        announce(t('convert.done', { name }));
        await openRecord('contact', r.person ? r.person.id : p.id);
      } catch (e) {
        const missing = e.details && Array.isArray(e.details.missing) ? e.details.missing.length : 0;
        error.textContent = missing ? `${errorText(e)} ${t('convert.missing', { count: missing })}` : errorText(e);
        error.hidden = false;
      } finally { send.disabled = false; }
    });
    return form;
  }

  // -- the view ---------------------------------------------------------------------------------

  section = registerView('search', { titleKey: 'nav.search', onShow: () => {
    // shown again, or in another language: the same results and record, relabelled
    if (!ui.record.hidden && ui.last) renderRecord(ui.last);
    else if (ui.items) clear(ui.list).append(...ui.items.map(resultRow));
  } });
  ui.q = h('input', { type: 'search', id: 'search-q', autocomplete: 'off', 'data-i18n-attr': 'placeholder:records.search_placeholder', placeholder: t('records.search_placeholder') });
  ui.kind = h('select', { id: 'search-kind' },
    h('option', { value: '', 'data-i18n': 'records.all' }, t('records.all')),
    h('option', { value: 'contact', 'data-i18n': 'records.contacts' }, t('records.contacts')),
    h('option', { value: 'lead', 'data-i18n': 'records.leads' }, t('records.leads')));
  ui.status = h('p', { class: 'muted', role: 'status', id: 'search-status' });
  ui.list = h('ul', { class: 'results', id: 'search-results', 'aria-labelledby': 'search-status' });
  ui.results = h('div', {}, ui.status, ui.list);
  ui.record = h('div', { class: 'record-wrap', id: 'record', hidden: true });
  section.append(
    h('form', { class: 'filters', id: 'search-form', role: 'search', onsubmit: search },
      h('label', { class: 'grow' }, h('span', { 'data-i18n': 'records.search_label' }, t('records.search_label')), ' ', ui.q),
      h('label', {}, h('span', { 'data-i18n': 'records.kind' }, t('records.kind')), ' ', ui.kind),
      h('button', { type: 'submit', class: 'btn btn-secondary', 'data-i18n': 'records.search' }, t('records.search'))),
    ui.results, ui.record);
}

// Call controls on the agent's live call card: hang up, hold / resume and transfer (blind or
// attended, to an extension or a number). The server validates the target and answers a stable
// error id; the panel shows that id translated, next to the form, and keeps what was typed.
// Built once per card, then only relabelled, so a live update never resets the transfer form.
// An attended transfer in progress (the agent talks to the target, the caller waits) replaces
// the buttons with its own two: complete (the caller goes to the target) or cancel (back to
// the caller); hanging up is not offered then, because on the PBX it would complete it.
import { api, h } from './dom.js';
import { t } from './i18n.js';
import { announce, errorText, toast } from './ui.js';

// The controls of one card: { el, hangup, hold, transfer, form, to, mode, error, busy }.
export function buildControls(entry, desk) {
  const id = entry.p.title.id;
  const c = {};
  c.hangup = h('button', { type: 'button', class: 'btn btn-danger btn-small', dataset: { control: 'hangup' }, onclick: () => act(entry, desk, 'hangup') });
  c.hold = h('button', { type: 'button', class: 'btn btn-secondary btn-small', dataset: { control: 'hold' }, onclick: () => act(entry, desk, desk.held.has(entry.call.id) ? 'resume' : 'hold') });
  c.transfer = h('button', { type: 'button', class: 'btn btn-secondary btn-small', dataset: { control: 'transfer' }, 'aria-expanded': 'false', 'aria-controls': `${id}-xfer`, onclick: () => toggleForm(c, !c.form.hidden ? false : true) });
  c.to = h('input', { id: `${id}-xfer-to`, name: 'to', inputmode: 'tel', autocomplete: 'off', required: true });
  c.toLabel = h('label', { for: `${id}-xfer-to` });
  c.mode = h('select', { id: `${id}-xfer-mode`, name: 'mode' }, h('option', { value: 'blind' }), h('option', { value: 'attended' }));
  c.modeLabel = h('label', { for: `${id}-xfer-mode` });
  c.send = h('button', { type: 'submit', class: 'btn btn-primary btn-small' });
  c.cancel = h('button', { type: 'button', class: 'btn btn-ghost btn-small', onclick: () => toggleForm(c, false, true) });
  c.error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  c.form = h('form', { class: 'transfer-form', id: `${id}-xfer`, hidden: true, onsubmit: (ev) => { ev.preventDefault(); transfer(entry, desk, c); } },
    h('div', { class: 'field' }, c.toLabel, c.to), h('div', { class: 'field' }, c.modeLabel, c.mode),
    h('div', { class: 'actions' }, c.send, c.cancel), c.error);
  c.heldNote = h('p', { class: 'held-note', role: 'status' });
  c.group = h('div', { class: 'control-buttons', role: 'group' }, c.hold, c.transfer, c.hangup);
  c.consultText = h('p', { class: 'consult-note', role: 'status', id: `${id}-consult` });
  c.complete = h('button', { type: 'button', class: 'btn btn-primary btn-small', dataset: { control: 'transfer-complete' }, onclick: () => finishTransfer(entry, desk, 'complete') });
  c.cancelXfer = h('button', { type: 'button', class: 'btn btn-secondary btn-small', dataset: { control: 'transfer-cancel' }, onclick: () => finishTransfer(entry, desk, 'cancel') });
  c.consult = h('div', { class: 'consult', role: 'group', 'aria-labelledby': `${id}-consult`, hidden: true }, c.consultText,
    h('div', { class: 'control-buttons' }, c.complete, c.cancelXfer));
  c.el = h('div', { class: 'call-controls' }, c.heldNote, c.consult, c.group, c.form);
  return c;
}

// Texts in the current language and the hold state; called on every update of the card.
export function relabelControls(entry, desk) {
  const c = entry.controls;
  const held = desk.held.has(entry.call.id);
  const who = desk.callerName(entry);
  c.group.setAttribute('aria-label', t('controls.group', { name: who }));
  setText(c.hangup, t('controls.hangup'));
  c.hangup.setAttribute('aria-label', t('controls.hangup_named', { name: who }));
  setText(c.hold, t(held ? 'controls.resume' : 'controls.hold'));
  c.hold.setAttribute('aria-pressed', held ? 'true' : 'false');
  setText(c.transfer, t('controls.transfer'));
  setText(c.toLabel, t('controls.transfer_to'));
  c.to.placeholder = t('controls.transfer_placeholder');
  setText(c.modeLabel, t('controls.transfer_mode'));
  setText(c.mode.options[0], t('controls.mode_blind'));
  setText(c.mode.options[1], t('controls.mode_attended'));
  setText(c.send, t('controls.transfer_send'));
  setText(c.cancel, t('action.cancel'));
  c.heldNote.hidden = !held;
  setText(c.heldNote, held ? t('controls.on_hold') : '');
  const consult = desk.consulting.get(entry.call.id);
  c.consult.hidden = !consult;
  c.group.hidden = Boolean(consult);
  if (consult) {
    c.form.hidden = true;
    setText(c.consultText, t('controls.consulting', { to: consult.to }));
    setText(c.complete, t('controls.complete_transfer'));
    c.complete.setAttribute('aria-label', t('controls.complete_transfer_named', { name: who, to: consult.to }));
    setText(c.cancelXfer, t('controls.cancel_transfer'));
    c.cancelXfer.setAttribute('aria-label', t('controls.cancel_transfer_named', { name: who }));
  }
}

// Complete or cancel the attended transfer in progress on this card's call.
async function finishTransfer(entry, desk, how) {
  const c = entry.controls;
  if (c.busy) return;
  c.busy = true;
  const consult = desk.consulting.get(entry.call.id) || {};
  try {
    const r = await api(`/panel/api/calls/${encodeURIComponent(entry.call.id)}/transfer/${how}`, {});
    desk.consulting.delete(entry.call.id);
    const text = how === 'complete'
      ? t('controls.transfer_completed', { to: r.to || consult.to })
      : t('controls.transfer_cancelled', { name: desk.callerName(entry) });
    toast(text, 'info');
    announce(text);
    desk.update(entry);
    // the caller's card stays with the agent: focus its first control, never the page
    if (!c.group.hidden && how === 'cancel') c.hold.focus();
    else entry.p.notes.focus();
  } catch (e) {
    toast(errorText(e), 'error');
  } finally {
    c.busy = false;
  }
}

// The server says a consultation started or ended on its own (the target hung up, the agent's
// phone completed it): the card follows.
export function consultationChanged(desk, data) {
  const entry = desk.entries.get(data.call_id);
  const before = desk.consulting.get(data.call_id);
  if (data.consulting) desk.consulting.set(data.call_id, data.consulting);
  else desk.consulting.delete(data.call_id);
  if (!entry) return;
  const hadFocus = entry.controls && entry.controls.consult.contains(document.activeElement);
  desk.update(entry);
  if (!data.consulting && before && data.reason === 'target_left') {
    const text = t('controls.transfer_target_left', { to: before.to, name: desk.callerName(entry) });
    toast(text, 'info');
    announce(text);
  }
  if (hadFocus && entry.controls && !entry.controls.group.hidden) entry.controls.hold.focus();
}

function toggleForm(c, open, refocus = false) {
  c.form.hidden = !open;
  c.transfer.setAttribute('aria-expanded', String(open));
  c.error.hidden = true;
  if (open) c.to.focus();
  else if (refocus) c.transfer.focus();
}

async function act(entry, desk, action) {
  const c = entry.controls;
  if (c.busy) return;
  c.busy = true;
  try {
    const r = await api(`/panel/api/calls/${encodeURIComponent(entry.call.id)}/${action}`, {});
    if (action === 'hold') desk.held.add(entry.call.id);
    if (action === 'resume') desk.held.delete(entry.call.id);
    if (action === 'hold' || action === 'resume') announce(t(r.held ? 'controls.on_hold' : 'controls.resumed'));
    if (action === 'hangup') announce(t('controls.hung_up'));
    desk.update(entry);
  } catch (e) {
    toast(errorText(e), 'error');
  } finally {
    c.busy = false;
  }
}

async function transfer(entry, desk, c) {
  const to = c.to.value.trim();
  c.error.hidden = true;
  if (!to) {
    showError(c, t('controls.transfer_empty'));
    return;
  }
  c.send.disabled = true;
  try {
    const r = await api(`/panel/api/calls/${encodeURIComponent(entry.call.id)}/transfer`, { to, mode: c.mode.value });
    toggleForm(c, false);
    const text = t(r.mode === 'attended' ? 'controls.transferring_attended' : 'controls.transferred', { to: r.to });
    toast(text, 'info');
    announce(text);
    if (r.consulting) {
      desk.consulting.set(entry.call.id, r.consulting);
      desk.update(entry);
      c.complete.focus();
    } else {
      c.transfer.focus();
    }
  } catch (e) {
    showError(c, errorText(e));
  } finally {
    c.send.disabled = false;
  }
}

function showError(c, text) {
  c.error.textContent = text;
  c.error.hidden = false;
  c.to.setAttribute('aria-invalid', 'true');
  c.to.focus();
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

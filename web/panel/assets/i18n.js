// Languages: one catalog per language (i18n/<code>.json, flat "key": "text" maps; a plural is
// {"one": ..., "other": ...} chosen with Intl.PluralRules). Dates, times, numbers and durations
// come from the browser's Intl for the chosen locale. Phone numbers are shown exactly as the
// server formats them. Adding a language is adding one catalog file; a Python test checks that
// every key the panel uses is in every catalog.

const FALLBACK = 'en';
let lang = FALLBACK;
let catalog = {};
let fallback = {};
let plural = new Intl.PluralRules(FALLBACK);

async function fetchCatalog(code) {
  const r = await fetch(`/panel/assets/i18n/${encodeURIComponent(code)}.json`, { headers: { Accept: 'application/json' } });
  if (!r.ok) throw new Error(`no catalog for ${code}`);
  return r.json();
}

// The browser's preferred languages, most wanted first, reduced to their base codes ("es-ES" -> "es").
export function browserLanguages() {
  const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || FALLBACK]);
  return [...new Set(wanted.map((l) => String(l).toLowerCase().split('-')[0]).filter(Boolean))];
}

// Load the user's language: the saved override first, else the browser's; the first one with a
// catalog wins, English last. Sets <html lang>.
export async function loadLanguage(override, available) {
  const candidates = [override, ...browserLanguages(), FALLBACK].filter((c) => c && (!available || available.includes(c)));
  if (!Object.keys(fallback).length) fallback = await fetchCatalog(FALLBACK).catch(() => ({}));
  for (const code of candidates) {
    try {
      catalog = code === FALLBACK ? fallback : await fetchCatalog(code);
      lang = code;
      break;
    } catch (e) { /* try the next one */ }
  }
  plural = new Intl.PluralRules(lang);
  document.documentElement.lang = lang;
  return lang;
}

export function language() {
  return lang;
}

// t('call.ringing_from', {name: 'Lucía'}); a plural entry picks its form with params.count.
// A missing key shows the key itself (and the catalog test fails), never a blank.
export function t(key, params = {}) {
  let text = key in catalog ? catalog[key] : key in fallback ? fallback[key] : key;
  if (text && typeof text === 'object') {
    const form = plural.select(Number(params.count) || 0);
    text = text[form] ?? text.other ?? key;
  }
  return String(text).replace(/\{(\w+)\}/g, (m, name) => {
    if (!(name in params)) return m;
    const v = params[name];
    return typeof v === 'number' ? number(v) : String(v);
  });
}

// t() for an id from the server (error ids, dispositions, outcomes): the translation when the
// catalog has one, else what the server said, else the id.
export function tId(prefix, id, serverText, params) {
  const key = `${prefix}.${id}`;
  if (key in catalog || key in fallback) return t(key, params);
  return serverText || String(id || '');
}

export function has(key) {
  return key in catalog || key in fallback;
}

export function number(n, options) {
  return new Intl.NumberFormat(lang, options).format(n);
}

export function time(epoch) {
  return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' }).format(new Date(Number(epoch) * 1000));
}

export function date(epoch) {
  return new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'short', year: 'numeric' }).format(new Date(Number(epoch) * 1000));
}

// "3 mar 2026, 14:05", whatever the day: for lists of past moments that must not be ambiguous.
export function dateTime(epoch) {
  if (!epoch) return '';
  return new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(new Date(Number(epoch) * 1000));
}

// "14:05" today, "3 mar 2026, 14:05" another day.
export function when(epoch) {
  if (!epoch) return '';
  const d = new Date(Number(epoch) * 1000);
  if (d.toDateString() === new Date().toDateString()) return time(epoch);
  return dateTime(epoch);
}

// "hace 5 minutos" / "in 2 days", for due dates.
export function relative(epoch) {
  const diff = Number(epoch) - Date.now() / 1000;
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });
  const abs = Math.abs(diff);
  if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
  return rtf.format(Math.round(diff / 86400), 'day');
}

// 75 -> "1 min 15 s", 9420 -> "2 h 37 min" (units from the catalog).
export function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const m = Math.floor(s / 60);
  if (!m) return t('unit.seconds', { n: s });
  if (m < 60) return t('unit.minutes_seconds', { m, s: String(s % 60).padStart(2, '0') });
  return t('unit.hours_minutes', { h: Math.floor(m / 60), m: String(m % 60).padStart(2, '0') });
}

// A timeline item in the reader's words: a call the log knows ("Llamada entrante, contestada
// por 101, 1 min 35 s") from its facts; anything else as written (a note's text).
export function activityText(a) {
  const c = a.call;
  if (!c) return a.summary || a.body || '';
  const outcome = c.answered_by && c.outcome === 'answered'
    ? t('timeline.answered_by', { ext: c.answered_by })
    : tId('outcome', c.outcome, c.outcome).toLowerCase();
  const parts = [t('timeline.call', { direction: tId('direction', c.direction, c.direction), outcome })];
  if (c.talk_seconds) parts.push(duration(c.talk_seconds));
  const text = parts.join(', ');  // "inbound call, ..." opens the line: "Inbound call, ..."
  return text.charAt(0).toLocaleUpperCase(lang) + text.slice(1);
}

export function countryName(code) {
  if (!code) return '';
  try {
    return new Intl.DisplayNames([lang], { type: 'region' }).of(String(code).toUpperCase()) || String(code);
  } catch (e) {
    return String(code);
  }
}

// Elements marked data-i18n="key" get the text; data-i18n-attr="aria-label:key;placeholder:key".
export function translatePage(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':');
      if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

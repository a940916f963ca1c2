// DOM helpers. Every string from a caller, the PBX or a CRM goes in as a text node, never as
// HTML: h('b', {}, untrusted) shows the characters of `untrusted`, whatever they are.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'href') el.setAttribute('href', safeUrl(value));
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Only http(s) links: a CRM record URL of "javascript:..." becomes a dead link.
export function safeUrl(value) {
  try {
    const url = new URL(String(value), window.location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : '#';
  } catch (e) {
    return '#';
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function initials(name) {
  const parts = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return '?';
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

// Text only screen readers hear (a count badge's meaning, a step's state).
export function srOnly(text) {
  return h('span', { class: 'sr-only' }, text);
}

// GET without a body; POST (or `method`: PUT, PATCH) with one. Same-origin writes carry the
// Origin header the server checks, for /panel/api and /api/v1 alike.
export async function api(path, body, method = 'POST') {
  const options = body === undefined
    ? { headers: { Accept: 'application/json' } }
    : { method, headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body) };
  const r = await fetch(path, options);
  if (r.status === 401) {
    window.location.assign('/panel/login');
    throw new Error('signed out');
  }
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new Error(doc.error ? doc.error.message : `Request failed (${r.status})`);
    err.status = r.status;
    err.id = doc.error ? doc.error.id : '';
    err.details = (doc.error && doc.error.details) || {};
    throw err;
  }
  return doc;
}

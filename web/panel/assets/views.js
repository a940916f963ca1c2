// The view registry: each view of the panel (live desk, history, missed calls, ...) is one
// entry with what to do when it is shown and when the language changes. A new view (the
// wallboard, a worklist, ...) is a module that calls registerView(); its nav button and
// section are created here when index.html does not have them.
import { h } from './dom.js';
import { t } from './i18n.js';

export const views = new Map();

// spec: { titleKey, navKey?, roles?: ['supervisor', 'admin'], onShow?(section), onLanguage?(section),
//         onMessage?(msg) }  -- onMessage sees every live message, for views that follow them.
export function registerView(id, spec) {
  let section = document.getElementById(`view-${id}`);
  if (!section) {
    section = h('section', { class: 'view', id: `view-${id}`, 'aria-labelledby': 'view-heading', hidden: true });
    document.getElementById('main').append(section);
  }
  let button = document.querySelector(`.nav-item[data-view="${id}"]`);
  if (!button) {
    button = h('button', { type: 'button', class: 'nav-item', dataset: { view: id } }, h('span', { 'data-i18n': spec.navKey || spec.titleKey }, t(spec.navKey || spec.titleKey)));
    document.getElementById('nav').append(button);
  }
  views.set(id, { ...spec, section, button });
  return section;
}

// i18n.js: the interface in several languages: translation tables loaded from /i18n/*.json, t() to look strings up.
//
// Every string the dashboard shows, and every explanation a lab emits
// ("note.KEY"), lives in web/i18n/LANG.json, one flat object per language
// keyed by message id; the same files are compiled into the binary, where the
// CLI and the event emitter read them (labs/i18n.c). Values may hold {name}
// placeholders, filled from t()'s second argument. Optional families: the
// labs' own texts ("lab.NAME.title", "param.LAB.NAME.help", ...),
// "summary.NAME", "metric.NAME", "unit.NAME"; without them the server's
// English is shown. tests/integration/test_i18n.py fails when a key used
// anywhere is missing from either language. A key missing from the current
// language falls back to English, and one missing from English shows as the
// key itself, so a gap is visible, not silent.

// The languages offered, by tag, with their own names.
export const LANGS = [
	{ tag: 'en', name: 'English' },
	{ tag: 'zh-CN', name: '简体中文' },
];
const STORE_KEY = 'socklab.lang';

const tables = { en: {} };
let lang = 'en';
const listeners = [];

// Load every language's table (before anything is shown).
export async function loadTranslations() {
	await Promise.all(LANGS.map(async ({ tag }) => {
		const r = await fetch(`/i18n/${tag}.json`, { cache: 'no-cache' });
		if (!r.ok) throw new Error(`/i18n/${tag}.json: HTTP ${r.status}`);
		tables[tag] = await r.json();
	}));
}

// Tables given directly (tests in node).
export function setTables(byTag) {
	Object.assign(tables, byTag);
}

// The language to start in: the one chosen before on this browser, else the
// first of the browser's languages we have, else English.
export function preferredLang(navLangs) {
	let saved = null;
	try {
		saved = localStorage.getItem(STORE_KEY);
	} catch {
		saved = null;
	}
	if (saved && LANGS.some((l) => l.tag === saved)) return saved;
	for (const c of navLangs || []) {
		const m = match(c);
		if (m) return m;
	}
	return 'en';
}

function match(code) {
	const c = String(code || '');
	if (LANGS.some((l) => l.tag === c)) return c;
	const base = c.split('-')[0].toLowerCase();
	const hit = LANGS.find((l) => l.tag.split('-')[0] === base);
	return hit ? hit.tag : null;
}

// Choose the language for later t() calls ("zh-CN", or "zh" for the first zh-*
// table); unknown languages get English. Returns the language chosen.
export function setLang(code, { remember = false } = {}) {
	const prev = lang;
	lang = match(code) || 'en';
	if (remember) {
		try {
			localStorage.setItem(STORE_KEY, lang);
		} catch {
			/* private mode: the choice lasts for this page only */
		}
	}
	if (typeof document !== 'undefined') document.documentElement.lang = lang;
	if (prev !== lang) for (const fn of listeners) fn(lang);
	return lang;
}

export function currentLang() {
	return lang;
}

// fn(lang) runs after every change of language.
export function onLangChange(fn) {
	listeners.push(fn);
}

function table() {
	return tables[lang] || tables.en;
}

// The string for key in the current language with {name} placeholders replaced
// from vars. When vars also has name_key (a message id such as "role.client"),
// {name} is that id's text in the current language (labs/i18n.c does the
// same): a role named in a lab's note reads in the reader's language. Values
// are inserted as text by the callers (textContent), so no escaping is needed
// here.
export function t(key, vars) {
	const cur = table();
	let s = Object.hasOwn(cur, key) ? cur[key] : Object.hasOwn(tables.en, key) ? tables.en[key] : key;
	if (vars) {
		s = s.replace(/\{([a-z_]+)\}/g, (m, name) => {
			if (!Object.hasOwn(vars, name)) return m;
			const id = vars[`${name}_key`];
			if (typeof id === 'string' && (Object.hasOwn(cur, id) || Object.hasOwn(tables.en, id))) {
				return Object.hasOwn(cur, id) ? cur[id] : tables.en[id];
			}
			return String(vars[name]);
		});
	}
	return s;
}

// True when key has a string in the current language or in English.
export function has(key) {
	return Object.hasOwn(table(), key) || Object.hasOwn(tables.en, key);
}

// t(key) when the tables have it, else fallback (a lab's own English text).
export function tr(key, fallback, vars) {
	return has(key) ? t(key, vars) : fallback;
}

// Fill every element that carries data-i18n="key" (its text) or
// data-i18n-attr="attr:key,attr:key" (attributes) under root.
export function applyI18n(root) {
	for (const el of root.querySelectorAll('[data-i18n]')) {
		el.textContent = t(el.dataset.i18n);
	}
	for (const el of root.querySelectorAll('[data-i18n-attr]')) {
		for (const pair of el.dataset.i18nAttr.split(',')) {
			const [attr, key] = pair.split(':');
			el.setAttribute(attr.trim(), t(key.trim()));
		}
	}
}

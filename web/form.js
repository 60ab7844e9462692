// form.js: the parameter form of one lab, generated from its schema in GET /api/labs.
//
// Integer parameters become number inputs with min/max, choices become selects,
// booleans checkboxes and strings text inputs with a byte limit. Parameters the
// server assigns itself are not shown; advanced ones sit in a collapsible
// section. The browser checks values first, but the server checks them again and
// its error (which names the parameter) is shown next to that field.

import { h, clear } from './dom.js';
import { t, tr, has, currentLang } from './i18n.js';

const utf8 = new TextEncoder();

// Build the form into container. byo, when given, is {param, value}: a
// "connect my own client" checkbox that sets that choice parameter. upload,
// when given, is {param, maxBytes, accept}: a file input for a capture the
// server saves and hands to that (server-assigned) parameter. editor, when
// given, is {maxBytes, starters(lang)}: a code editor for every parameter the
// schema marks "upload" (the browser sends its text; the server saves it),
// with starter programs to load. main, when given, names the lab's main
// knobs: they are the form, every other one is under "more knobs" (without
// it, the schema's "advanced" flag decides).
export function buildForm(container, lab, { byo, upload, editor, main } = {}) {
	clear(container);
	const fields = new Map(); // param name -> {def, input, errorEl, wrap}
	// Titles, help and units in the current language when the tables have them.
	const local = (lab.params || []).map((p) => ({
		...p,
		title: tr(`param.${lab.name}.${p.name}.title`, p.title),
		help: tr(`param.${lab.name}.${p.name}.help`, p.help),
		unit: p.unit && has(`unit.${p.unit}`) ? t(`unit.${p.unit}`) : p.unit,
	}));
	const visible = local.filter((p) => !p.server_assigned);
	const isMain = Array.isArray(main) ? (p) => main.includes(p.name) : (p) => !p.advanced;
	const basic = visible.filter(isMain);
	const advanced = visible.filter((p) => !isMain(p));
	const formError = h('p', { class: 'form-error', attrs: { id: `form-error-${lab.name}`, role: 'alert' } });
	formError.hidden = true;

	let byoBox = null;
	const byoDef = byo && visible.find((p) => p.name === byo.param && p.type === 'choice'
		&& (p.choices || []).includes(byo.value));
	if (byoDef) {
		byoBox = h('input', { attrs: { type: 'checkbox', id: 'byo', name: 'byo' } });
		// byo.off: this server runs no such labs (--max-byo 0); byo.url is
		// the page of the one that does (--byo-url), when the operator said.
		let help = h('p', { class: 'help', text: t('form.byo_help') });
		if (byo.off) {
			byoBox.disabled = true;
			help = byo.url
				? h('p', { class: 'help byo-elsewhere' }, t('form.byo_elsewhere') + ' ',
					h('a', { attrs: { href: byo.url, rel: 'noopener', id: 'byo-url' }, text: byo.url }))
				: h('p', { class: 'help byo-elsewhere', text: t('form.byo_off') });
		}
		const wrap = h('div', { class: 'byo-toggle' },
			byoBox,
			h('div', {},
				h('label', { attrs: { for: 'byo' }, text: t('form.byo') }),
				help));
		container.appendChild(wrap);
	}

	// The programs come first: they are what a student runs.
	const editors = new Map(); // upload param -> textarea
	const uploads = local.filter((p) => p.upload && p.server_assigned);
	if (editor && uploads.length) {
		const list = () => editor.starters(currentLang());
		const pick = h('select', { attrs: { id: 'starter', name: 'starter' } },
			...list().map((st) => h('option', { attrs: { value: st.id }, text: t(st.title) })));
		const load = () => {
			const st = list().find((x) => x.id === pick.value);
			if (st) for (const [k, ta] of editors) ta.value = st.files[k] || '';
		};
		const loadBtn = h('button', { class: 'btn btn-small btn-ghost', attrs: { type: 'button' }, text: t('own.starter.load') });
		loadBtn.addEventListener('click', load);
		container.appendChild(h('div', { class: 'field starter-field' },
			h('label', { attrs: { for: 'starter' }, text: t('own.starter') }),
			h('div', { class: 'upload-row' }, pick, loadBtn),
			h('p', { class: 'help', text: t('own.starter_help') })));
		const row = h('div', { class: 'editors' });
		for (const p of uploads) {
			const id = `file-${p.name}`;
			const ta = h('textarea', {
				class: 'code-editor',
				attrs: { id, name: id, rows: 16, spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', wrap: 'off', 'aria-describedby': `${id}-help` },
			});
			// Tab indents (Python needs it) instead of leaving the editor.
			ta.addEventListener('keydown', (e) => {
				if (e.key !== 'Tab' || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey) return;
				e.preventDefault();
				ta.setRangeText('    ', ta.selectionStart, ta.selectionEnd, 'end');
			});
			editors.set(p.name, ta);
			row.appendChild(h('div', { class: 'field editor-field' },
				h('label', { attrs: { for: id }, text: p.title }), ta,
				h('p', { class: 'help', attrs: { id: `${id}-help` }, text: p.help })));
		}
		container.appendChild(row);
		load();
	}
	const grid = h('div', { class: 'fields' });
	for (const p of basic) grid.appendChild(makeField(p, fields));
	if (visible.length === 0) grid.appendChild(h('p', { class: 'help', text: t('form.no_params') }));
	container.appendChild(grid);

	if (advanced.length) {
		const agrid = h('div', { class: 'fields' });
		for (const p of advanced) agrid.appendChild(makeField(p, fields));
		container.appendChild(h('details', { class: 'advanced' },
			h('summary', { text: t('form.advanced_n', { n: advanced.length }) }), agrid));
	}
	let fileInput = null;
	if (upload && (lab.params || []).some((p) => p.name === upload.param)) {
		fileInput = h('input', { attrs: { type: 'file', id: 'upload-file', name: 'upload', accept: upload.accept || '' } });
		const clearBtn = h('button', { class: 'btn btn-small btn-ghost', attrs: { type: 'button' }, text: t('form.upload_clear') });
		clearBtn.addEventListener('click', () => { fileInput.value = ''; });
		container.appendChild(h('div', { class: 'field upload-field' },
			h('label', { attrs: { for: 'upload-file' }, text: t('form.upload') }),
			h('div', { class: 'upload-row' }, fileInput, clearBtn),
			h('p', { class: 'help', text: t('form.upload_help', { max: Math.round(upload.maxBytes / 1024) }) })));
	}
	container.appendChild(formError);

	// The editors' texts for the run request: {param: text} of the non-empty
	// ones; null without editors; false (after showing why) when one is too
	// large to upload.
	function collectFiles() {
		if (!editors.size) return null;
		const files = {};
		for (const [k, ta] of editors) {
			const n = utf8.encode(ta.value).length;
			if (n > editor.maxBytes) {
				showFormError(t('own.too_big', { name: k, size: (n / 1024).toFixed(1), max: Math.round(editor.maxBytes / 1024) }));
				return false;
			}
			if (ta.value.trim()) files[k] = ta.value;
		}
		if (!Object.keys(files).length) {
			showFormError(t('own.no_program'));
			return false;
		}
		return files;
	}

	// Fields that do not apply to the other fields' values are disabled with
	// the reason (the server would refuse them): the wire's knobs on
	// loopback, a parameter documented "mode=server: ..." outside that mode,
	// and the client's knobs (byo.clientOnly) when you bring your own client.
	const rules = [];
	const net = fields.get('network');
	const english = new Map((lab.params || []).map((p) => [p.name, p.help || '']));
	if (net && net.def.type === 'choice' && (net.def.choices || []).includes('two-hosts')) {
		for (const f of fields.values()) {
			if (/^(c2s|s2c)_/.test(f.def.name) || /^two-hosts:/.test(english.get(f.def.name) || '')) {
				rules.push({ f, ok: () => net.input.value === 'two-hosts', why: 'form.na_two_hosts' });
			}
		}
	}
	const mode = fields.get('mode');
	if (mode && mode.def.type === 'choice' && (mode.def.choices || []).includes('server')) {
		for (const f of fields.values()) {
			if (/^mode=server\b/.test(english.get(f.def.name) || '')) rules.push({ f, ok: () => mode.input.value === 'server', why: 'form.na_server_mode' });
			else if (byo && (byo.clientOnly || []).includes(f.def.name)) rules.push({ f, ok: () => mode.input.value !== 'server', why: 'form.na_own_client' });
		}
	}
	function applyRules() {
		for (const r of rules) {
			const na = !r.ok();
			r.f.na = na;
			r.f.input.disabled = na || formDisabled;
			r.f.wrap.classList.toggle('field-na', na);
			let note = r.f.wrap.querySelector('.na-why');
			if (na && !note) {
				note = h('p', { class: 'na-why' });
				const help = r.f.wrap.querySelector(':scope > .help');
				r.f.wrap.insertBefore(note, help);
			}
			if (note) {
				note.textContent = na ? t(r.why) : '';
				note.hidden = !na;
			}
		}
	}
	let formDisabled = false;
	for (const el of [net, mode]) if (el) el.input.addEventListener('change', applyRules);

	if (byoBox) {
		const f = fields.get(byoDef.name);
		// With two choices the checkbox says everything the select would.
		if ((byoDef.choices || []).length === 2) f.wrap.hidden = true;
		const other = (byoDef.choices || []).find((c) => c !== byo.value) ?? byoDef.default;
		const sync = () => {
			if (byoBox.checked) f.input.value = byo.value;
			else if (f.input.value === byo.value) f.input.value = other;
		};
		byoBox.addEventListener('change', () => {
			sync();
			applyRules();
		});
		f.input.addEventListener('change', () => { byoBox.checked = f.input.value === byo.value; });
		byoBox.checked = f.input.value === byo.value;
	}

	function clearErrors() {
		for (const f of fields.values()) setFieldError(f, null);
		formError.hidden = true;
		formError.textContent = '';
	}

	// Validate every field; on success return the typed values that differ
	// from their defaults (the server applies the rest, and some labs refuse a
	// parameter set explicitly where it does not apply), else null with the
	// errors shown and the first bad field focused.
	function collect() {
		clearErrors();
		const values = {};
		let first = null;
		for (const f of fields.values()) {
			if (f.na) continue; // does not apply: the server's default stands
			const r = readField(f);
			if (r.error) {
				setFieldError(f, r.error);
				first = first || f;
			} else if (!sameAsDefault(f.def, r.value)) {
				values[f.def.name] = r.value;
			}
		}
		if (first) {
			openAdvancedFor(first);
			first.input.focus();
			showFormError(t('form.fix_errors'));
			return null;
		}
		return values;
	}

	function showFormError(msg) {
		formError.textContent = msg;
		formError.hidden = false;
	}

	// Show a server error: next to its field when the parameter is in the form
	// (then true), else under the form.
	function showServerError(param, message) {
		const f = param && fields.get(param);
		if (f) {
			// The server's message names the parameter ("parameter 'bind': ..."):
			// next to the field, its title says it once.
			const text = String(message).replace(/^parameter '[^']*':\s*/, '');
			setFieldError(f, t('form.err_server', { field: f.def.title || f.def.name, message: text }));
			openAdvancedFor(f);
			f.input.focus();
			showFormError(t('form.fix_errors'));
			return true;
		}
		showFormError(message);
		return false;
	}

	function resetDefaults() {
		clearErrors();
		for (const f of fields.values()) setInput(f, f.def.default);
		if (byoBox) byoBox.checked = fields.get(byoDef.name).input.value === byo.value;
		applyRules();
	}

	// Set fields from a {name: value} object (unknown names are ignored), for
	// a run started from another lab's view with the same settings.
	function setValues(values) {
		clearErrors();
		for (const [k, v] of Object.entries(values || {})) {
			const f = fields.get(k);
			if (!f) continue;
			setInput(f, v);
			// A knob set away from its default (a class run's) is shown.
			if (v !== f.def.default) openAdvancedFor(f);
		}
		if (byoBox) byoBox.checked = fields.get(byoDef.name).input.value === byo.value;
		applyRules();
	}

	// Put programs ({param: text}) into the editors (a class run's, to try).
	function setFiles(files) {
		for (const [k, ta] of editors) ta.value = typeof files[k] === 'string' ? files[k] : '';
	}

	function setDisabled(disabled) {
		formDisabled = disabled;
		for (const el of container.querySelectorAll('input, select, textarea, button')) el.disabled = disabled;
		if (byoBox && byo.off) byoBox.disabled = true;
		applyRules();
	}

	applyRules();

	return {
		collect, collectFiles, setFiles, showServerError, showFormError, clearErrors, resetDefaults, setDisabled, setValues,
		byoChecked: () => !!(byoBox && byoBox.checked),
		// The capture chosen for upload, or null; and the most it may weigh.
		uploadFile: () => (fileInput && fileInput.files && fileInput.files[0]) || null,
		uploadMax: upload ? upload.maxBytes : 0,
	};
}

function makeField(p, fields) {
	const id = `p-${p.name}`;
	const helpId = `${id}-help`;
	const errId = `${id}-error`;
	let input;
	const describedBy = `${helpId} ${errId}`;

	switch (p.type) {
	case 'integer':
		input = h('input', {
			attrs: {
				type: 'number', id, name: p.name, step: 1, inputmode: 'numeric',
				min: p.min, max: p.max, required: true, 'aria-describedby': describedBy,
			},
		});
		break;
	case 'boolean':
		input = h('input', { attrs: { type: 'checkbox', id, name: p.name, 'aria-describedby': describedBy } });
		break;
	case 'choice':
		input = h('select', { attrs: { id, name: p.name, 'aria-describedby': describedBy } },
			(p.choices || []).map((c) => h('option', { attrs: { value: c }, text: c })));
		break;
	default:
		input = h('input', {
			attrs: {
				type: 'text', id, name: p.name, spellcheck: 'false', autocomplete: 'off',
				maxlength: p.max_len, minlength: p.min_len, 'aria-describedby': describedBy,
			},
		});
	}

	const label = h('label', { attrs: { for: id } }, p.title || p.name,
		p.unit ? h('span', { class: 'unit', text: ` (${p.unit})` }) : null);
	const hints = [];
	if (p.type === 'integer' && p.min !== undefined && p.max !== undefined) {
		hints.push(t('form.range', { min: p.min, max: p.max }));
	}
	if (p.type === 'string' && p.max_len !== undefined) hints.push(t('form.len', { max: p.max_len }));
	if (p.default !== undefined && p.default !== null && p.default !== '') {
		hints.push(t('form.default', { value: p.default }));
	}
	const help = h('p', { class: 'help', attrs: { id: helpId } }, p.help || '',
		hints.length ? h('span', { class: 'hint', text: hints.join(' · ') }) : null);
	const errorEl = h('p', { class: 'field-error', attrs: { id: errId, 'aria-live': 'polite' } });
	errorEl.hidden = true;

	const wrap = p.type === 'boolean'
		? h('div', { class: 'field field-bool', dataset: { param: p.name } },
			h('div', { class: 'bool-row' }, input, label), help, errorEl)
		: h('div', { class: 'field', dataset: { param: p.name } }, label, input, help, errorEl);
	const f = { def: p, input, errorEl, wrap };
	fields.set(p.name, f);
	setInput(f, p.default);
	return wrap;
}

function sameAsDefault(p, v) {
	if (p.default === undefined || p.default === null) return false;
	if (p.type === 'boolean') return v === (p.default === true || p.default === 'true');
	return String(v) === String(p.default);
}

function setInput(f, v) {
	if (f.def.type === 'boolean') f.input.checked = v === true || v === 'true' || v === 1;
	else f.input.value = v === undefined || v === null ? '' : String(v);
}

function setFieldError(f, msg) {
	f.errorEl.textContent = msg || '';
	f.errorEl.hidden = !msg;
	f.wrap.classList.toggle('invalid', !!msg);
	if (msg) f.input.setAttribute('aria-invalid', 'true');
	else f.input.removeAttribute('aria-invalid');
}

function openAdvancedFor(f) {
	const d = f.wrap.closest('details');
	if (d) d.open = true;
}

// {value} or {error} for one field, checked against its schema.
function readField(f) {
	const p = f.def;
	const field = p.title || p.name;
	if (p.type === 'boolean') return { value: f.input.checked };
	const raw = f.input.value.trim();
	if (p.type === 'integer') {
		// A number input reports "" for text it cannot parse: say so.
		if (raw === '') {
			return { error: f.input.validity.badInput
				? t('form.err_integer', { field }) : t('form.err_required', { field }) };
		}
		if (!/^-?\d+$/.test(raw)) return { error: t('form.err_integer', { field }) };
		const n = Number(raw);
		if ((p.min !== undefined && n < p.min) || (p.max !== undefined && n > p.max)) {
			return { error: t('form.err_range', { field, min: p.min, max: p.max, value: raw }) };
		}
		return { value: n };
	}
	if (p.type === 'choice') {
		if (!(p.choices || []).includes(f.input.value)) {
			return { error: t('form.err_choice', { field, choices: (p.choices || []).join(', ') }) };
		}
		return { value: f.input.value };
	}
	const v = f.input.value;
	const len = utf8.encode(v).length;
	const min = p.min_len ?? 0;
	const max = p.max_len ?? Infinity;
	if (len < min || len > max) return { error: t('form.err_len', { field, min, max, len }) };
	return { value: v };
}

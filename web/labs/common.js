// common.js: the part of a run's view every lab shares: status, sandbox, parameters, errors, summary.
//
// A lab renderer creates one RunFrame and passes it every event first; the
// frame takes run.start, run.end and error, counts events, notices gaps in
// seq (the event model promises none, so a gap means the view lost events)
// and keeps the elapsed time. Everything is updated once per batch.

import { h, replace, fmtDuration, fmtValue } from '../dom.js';
import { t, has } from '../i18n.js';
import { networkBlock } from './net.js';

export class RunFrame {
	constructor(root, ctx) {
		this.ctx = ctx;
		this.count = 0;
		this.lastSeq = -1;
		this.lastT = 0;
		this.status = 'running';
		this.params = null;
		this.dirty = true;

		this.pill = h('span', { class: 'pill pill-running', attrs: { 'data-status': 'running' }, text: t('run.status.running') });
		this.elapsedEl = h('dd', { text: '0' });
		this.countEl = h('dd', { text: '0' });
		this.labEl = h('dd', { text: ctx.lab || '' });
		const title = h('h2', { class: 'run-title', text: t('run.heading', { id: ctx.runId || '' }) });
		const dl = h('dl', { class: 'run-stats' },
			h('dt', { text: t('run.lab') }), this.labEl,
			h('dt', { text: t('run.elapsed') }), this.elapsedEl,
			h('dt', { text: t('run.events') }), this.countEl);
		const links = ctx.eventsURL
			? h('a', { class: 'download', attrs: { href: ctx.eventsURL, download: `${ctx.runId}.jsonl` }, text: t('run.download') })
			: null;
		this.sandboxEl = h('div', { class: 'sandbox' });
		this.sandboxEl.hidden = true;
		this.networkEl = h('div', { class: 'network' });
		this.networkEl.hidden = true;
		this.paramsEl = h('details', { class: 'params' });
		this.paramsEl.hidden = true;
		this.gapEl = h('p', { class: 'callout callout-warn' });
		this.gapEl.hidden = true;
		this.errorsEl = h('div', { class: 'run-errors', attrs: { role: 'alert' } });
		this.summaryEl = h('section', { class: 'run-summary' });
		this.summaryEl.hidden = true;

		this.el = h('section', { class: 'card run-card' },
			h('header', { class: 'run-head' }, title, this.pill, dl, links),
			this.sandboxEl, this.networkEl, this.paramsEl, this.gapEl, this.errorsEl);
		if (ctx.runId) this.el.dataset.run = ctx.runId;
		root.appendChild(this.el);
		this.gaps = 0;
	}

	// The summary goes last in the page, after the lab's own panels.
	attachSummary(root) {
		root.appendChild(this.summaryEl);
	}

	// Look at one event. Returns true when the frame fully handled it.
	take(ev) {
		// Not an event of the run: the server's word that it has no end.
		if (ev.type === 'watch.incomplete') {
			this.showIncomplete(ev);
			return true;
		}
		this.count++;
		this.dirty = true;
		if (typeof ev.seq === 'number') {
			if (this.lastSeq >= 0 && ev.seq > this.lastSeq + 1) {
				this.gaps += ev.seq - this.lastSeq - 1;
				this.gapEl.textContent = t('run.gap', { n: this.gaps, seq: ev.seq });
				this.gapEl.hidden = false;
			}
			if (ev.seq > this.lastSeq) this.lastSeq = ev.seq;
		}
		if (typeof ev.t_us === 'number' && ev.t_us > this.lastT) this.lastT = ev.t_us;
		switch (ev.type) {
		case 'run.start':
			this.showStart(ev);
			return true;
		case 'run.end':
			this.showEnd(ev);
			return true;
		case 'error':
			this.showError(ev);
			return false; // labs may also show it in place
		default:
			return false;
		}
	}

	// Update the counters once per batch.
	flush() {
		if (!this.dirty) return;
		this.dirty = false;
		this.countEl.textContent = String(this.count);
		this.elapsedEl.textContent = fmtDuration(this.lastT);
	}

	// Where the player is (pos of total events; ended: the run's last event
	// is its run.end). A finished run shown up to an earlier event is a
	// replay stopped there: the badge says so instead of "running".
	showPlace(pos, total, ended) {
		const before = ended && pos < total;
		const st = before ? 'replay' : this.status;
		const text = before ? t('run.status.replay', { n: pos, total }) : t(`run.status.${this.status}`);
		if (this.pill.dataset.status === st && this.pill.textContent === text) return;
		this.pill.textContent = text;
		this.pill.className = `pill pill-${st.replace(/[^a-z]/g, '')}`;
		this.pill.dataset.status = st;
	}

	showStart(ev) {
		this.params = ev.params || {};
		if (ev.lab) this.labEl.textContent = ev.lab;
		const sb = ev.sandbox;
		if (this.params.replay) {
			// A recorded capture is decoded: no socket, no network at all.
			replace(this.sandboxEl, h('p', { class: 'sb-replay', text: t('run.sandbox.replay') }));
			this.sandboxEl.hidden = false;
		} else if (sb && typeof sb === 'object') {
			const facts = [];
			for (const [k, v] of Object.entries(sb)) {
				if (k === 'netns' || k === 'note') continue;
				facts.push(h('span', { class: 'fact' }, h('span', { class: 'k', text: label('run.sandbox.fact', k) }), ' ', summaryValue(k, v)));
			}
			replace(this.sandboxEl,
				h('p', { class: sb.netns ? 'sb-netns' : 'sb-host',
					text: t(sb.netns ? 'run.sandbox.netns' : 'run.sandbox.host') }),
				sb.note ? h('p', { class: 'sb-note', text: sandboxNote(sb, ev.network, ev.lab || this.ctx.lab) }) : null,
				facts.length ? h('p', { class: 'sb-facts' }, facts) : null);
			this.sandboxEl.classList.toggle('netns', !!sb.netns);
			this.sandboxEl.hidden = false;
		}
		const nb = networkBlock(ev.network);
		if (nb) {
			replace(this.networkEl, nb);
			this.networkEl.hidden = false;
		}
		const entries = Object.entries(this.params);
		if (entries.length) {
			replace(this.paramsEl,
				h('summary', { text: t('run.params') }),
				h('dl', { class: 'kv' }, entries.map(([k, v]) => h('div', {},
					h('dt', { text: k }), h('dd', { dataset: { cmp: `param.${k}` }, text: fmtValue(v) })))));
			this.paramsEl.hidden = false;
		}
	}

	showEnd(ev) {
		const st = typeof ev.status === 'string' ? ev.status : 'error';
		this.status = st;
		this.pill.textContent = t(`run.status.${st}`);
		this.pill.className = `pill pill-${st.replace(/[^a-z]/g, '')}`;
		this.pill.dataset.status = st;
		// Server-side file paths (the capture's place on the server's disk)
		// mean nothing to a student: the view offers the file itself.
		const sum = (ev.summary && typeof ev.summary === 'object' ? Object.entries(ev.summary) : [])
			.filter(([k, v]) => !(typeof v === 'string' && v.startsWith('/') && /pcap|path|file/.test(k)));
		const lab = ev.lab || this.ctx.lab || '';
		replace(this.summaryEl,
			h('h3', {},
				t('run.summary'), ' ',
				h('span', { class: `pill pill-${st.replace(/[^a-z]/g, '')}`, attrs: { 'data-status': st }, text: t(`run.status.${st}`) })),
			sum.length ? h('dl', { class: 'tiles' }, sum.filter(([, v]) => !isObject(v) && !isRecordList(v)).map(([k, v]) => h('div', { class: 'tile', dataset: { key: k } },
				h('dt', { text: summaryLabel(k, lab) }), h('dd', { dataset: { cmp: k }, text: summaryValue(k, v, lab) })))) : null,
			// Nested objects: a table per group; a group of groups (the
			// wire's counters per direction) as one table, a column each;
			// a list of records (one per connection) as a table, a row each.
			sum.filter(([, v]) => isObject(v)).map(([k, v]) => summaryGroup(k, v, lab)),
			sum.filter(([, v]) => isRecordList(v)).map(([k, v]) => summaryList(k, v, lab)));
		this.summaryEl.classList.add('card');
		this.summaryEl.hidden = false;
		// Two runs side by side compare their summaries (app.js).
		this.summaryEl.dispatchEvent(new CustomEvent('socklab:summary', { bubbles: true }));
	}

	// The server that ran it stopped before run.end (--nats): what the
	// stream holds is shown, no end is made up and no summary drawn.
	showIncomplete(ev) {
		this.status = 'incomplete';
		this.pill.textContent = t('run.status.incomplete');
		this.pill.className = 'pill pill-incomplete';
		this.pill.dataset.status = 'incomplete';
		this.errorsEl.appendChild(h('p', { class: 'callout callout-warn run-incomplete', attrs: { role: 'status' },
			text: t('run.incomplete_note', { events: ev.events ?? this.count }) }));
	}

	showError(ev) {
		this.errorsEl.appendChild(errorCallout(ev));
	}
}

// A summary key as words: the lab's own label for it in that group
// ("summary.LAB.GROUP.KEY"), the lab's for the key ("summary.LAB.KEY"), the
// common table's ("summary.KEY"), else the key without its unit suffix (the
// unit goes with the value: summaryValue).
export function summaryLabel(k, lab, group) {
	for (const id of [lab && group ? `summary.${lab}.${group}.${k}` : null, lab ? `summary.${lab}.${k}` : null, `summary.${k}`]) {
		if (id && has(id)) return t(id);
	}
	return String(k).replace(/_(us|ms|ms_left|pct|s)$/, (m, u) => (u === 'ms_left' ? '_left' : '')).replace(/^ms_/, '').replace(/_/g, ' ');
}

// A summary value with its unit: durations from _us and _ms keys (and
// ms_ ones: ms_left), a share from _pct (one decimal), lists joined, true/false as words,
// a missing value as "none", words the tables know in the reader's language.
export function summaryValue(k, v, lab) {
	if (typeof v === 'number') {
		if (/_us$/.test(k)) return fmtDuration(v);
		if (/_ms(_left)?$|^ms_/.test(k)) return fmtDuration(v * 1000);
		if (/_pct$/.test(k)) return `${Number.isInteger(v) ? v : Number(v.toFixed(1))} %`;
		return String(v);
	}
	if (v === null) return t('summary.none');
	if (typeof v === 'boolean') return t(v ? 'summary.yes' : 'summary.no');
	if (Array.isArray(v)) return v.every((x) => x === null || typeof x !== 'object') ? v.map(String).join(', ') : fmtValue(v);
	if (typeof v === 'string' && lab && has(`summary.${lab}.value.${v}`)) return t(`summary.${lab}.value.${v}`);
	if (typeof v === 'string' && has(`summary.value.${v}`)) return t(`summary.value.${v}`);
	return fmtValue(v);
}

// The sandbox's one line in the current language for the two networks the
// labs build; any other note is the server's own text.
function sandboxNote(sb, net, lab) {
	const kind = net && typeof net === 'object' ? net.kind : null;
	if (sb.netns && (kind === 'two-hosts' || kind === 'loopback') && has(`run.sandbox.note.${kind}`)) return t(`run.sandbox.note.${kind}`);
	// The one lab that builds a topology of its own (LAB_NET_TOPOLOGY).
	if (sb.netns && !kind && lab === 'layers') return t('run.sandbox.note.topology');
	return sb.note;
}

function summaryGroup(k, v, lab) {
	const entries = Object.entries(v);
	const sub = entries.filter(([, x]) => isObject(x));
	const flat = entries.filter(([, x]) => !isObject(x));
	// Sub-groups whose values are all scalars: one table, a column each.
	let table = null;
	if (sub.length && sub.every(([, x]) => Object.values(x).every((y) => !isObject(y)))) {
		const rows = [...new Set(sub.flatMap(([, x]) => Object.keys(x)))];
		table = h('table', { class: 'summary-table' },
			h('thead', {}, h('tr', {}, h('th', {}), sub.map(([c]) => h('th', { attrs: { scope: 'col' }, text: summaryLabel(c, lab, k) })))),
			h('tbody', {}, rows.map((r) => h('tr', {}, h('th', { attrs: { scope: 'row' }, text: summaryLabel(r, lab, k) }),
				sub.map(([c, x]) => h('td', { dataset: { cmp: `${k}.${c}.${r}` }, text: r in x ? summaryValue(r, x[r], lab) : '' }))))));
	}
	return h('div', { class: 'summary-group', dataset: { key: k } },
		h('h4', { text: summaryLabel(k, lab) }),
		flat.length || !table ? h('dl', { class: 'kv' }, (table ? flat : entries).map(([k2, v2]) => h('div', {},
			h('dt', { text: summaryLabel(k2, lab, k) }),
			h('dd', { dataset: { cmp: `${k}.${k2}` }, text: isObject(v2) ? Object.entries(v2).map(([a, b]) => `${summaryLabel(a, lab, k2)}: ${summaryValue(a, b, lab)}`).join(' · ') : summaryValue(k2, v2, lab) })))) : null,
		table);
}

// A list of records with scalar fields (tcp-echo's captured_connections,
// kernel_states): a table with a row per record, a column per field.
function summaryList(k, list, lab) {
	const cols = [...new Set(list.flatMap((r) => Object.keys(r)))];
	return h('div', { class: 'summary-group', dataset: { key: k } },
		h('h4', { text: summaryLabel(k, lab) }),
		h('div', { class: 'summary-list-scroll' }, h('table', { class: 'summary-table summary-list' },
			h('thead', {}, h('tr', {}, cols.map((c) => h('th', { attrs: { scope: 'col' }, text: summaryLabel(c, lab, k) })))),
			h('tbody', {}, list.map((r, i) => h('tr', {}, cols.map((c) => h('td', { dataset: { cmp: `${k}.${i}.${c}` },
				text: c in r ? summaryValue(c, r[c], lab) : '' }))))))));
}

function isRecordList(v) {
	return Array.isArray(v) && v.length > 0 && v.every((r) => isObject(r) && Object.values(r).every((x) => x === null || typeof x !== 'object'));
}

function isObject(v) {
	return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// An "error" event as a callout: code, message, parameter.
// An error whose code has its own text ("error.CODE") is said in the user's
// words; the server's message stays in the tooltip.
export function errorCallout(ev) {
	if (ev.code && has(`error.${ev.code}`)) {
		return h('div', { class: 'callout callout-error', attrs: { title: ev.message || '' }, dataset: { code: ev.code } },
			h('strong', { text: t(`error.${ev.code}`) }));
	}
	return h('div', { class: 'callout callout-error' },
		h('strong', { text: t('run.error', { code: ev.code || '?' }) }),
		ev.param ? h('code', { class: 'param', text: ` ${ev.param}` }) : null,
		h('span', { text: `: ${ev.message || ''}` }));
}

// A "note" event as an explanation callout. The lab's English text is shown
// unless the current language has the note's key ("note.KEY", filled from the
// note's params).
export function noteCallout(ev) {
	const key = `note.${ev.key}`;
	const text = ev.key && has(key) ? t(key, ev.params || {}) : ev.text || ev.key || '';
	return h('div', { class: 'callout callout-note', dataset: { key: ev.key || '' } },
		h('span', { class: 'note-icon', attrs: { 'aria-hidden': 'true' }, text: 'i' }),
		h('p', { text }));
}

// A label for a name that comes from a lab (a summary key, a metric name):
// the table's "PREFIX.NAME" when there is one, else the name with spaces.
export function label(prefix, name) {
	const key = `${prefix}.${name}`;
	return has(key) ? t(key) : String(name).replace(/_/g, ' ');
}

// Rows beyond this many are counted, not drawn: the page stays responsive and
// the full record remains in the run's events file.
// When a socket call returned, on the run clock: t_call_us + blocked_us.
// (A call's t_us is when its event was emitted: for a lab with an observer
// that is after the segments around it, about 20 ms later.)
export function callReturnUs(ev) {
	return typeof ev.t_call_us === 'number' && typeof ev.blocked_us === 'number'
		? ev.t_call_us + ev.blocked_us : ev.t_us;
}

export const MAX_ROWS = 5000;

// Past this many rows a trace is "long": its off-screen rows skip rendering.
export const LONG_ROWS = 200;

// A command a student copies into a terminal, with a copy button (the Clipboard
// API where the page is a secure context, else select-and-copy: plain-http
// classrooms are not secure contexts).
export function commandBox(label, cmd, cls) {
	const code = h('code', { class: `cmd ${cls}`, text: cmd });
	const btn = h('button', { class: 'btn btn-small copy', attrs: { type: 'button' }, text: t('byo.copy') });
	btn.addEventListener('click', async () => {
		let ok = false;
		try {
			if (navigator.clipboard && window.isSecureContext) {
				await navigator.clipboard.writeText(cmd);
				ok = true;
			}
		} catch {
			ok = false;
		}
		if (!ok) {
			const range = document.createRange();
			range.selectNodeContents(code);
			const sel = window.getSelection();
			sel.removeAllRanges();
			sel.addRange(range);
			try {
				ok = document.execCommand('copy');
			} catch {
				ok = false;
			}
		}
		btn.textContent = t(ok ? 'byo.copied' : 'byo.copy_failed');
		setTimeout(() => { btn.textContent = t('byo.copy'); }, 2000);
	});
	return h('div', { class: 'cmd-box' },
		h('p', { class: 'cmd-label', text: label }),
		h('div', { class: 'cmd-row' }, h('pre', { class: 'cmd-pre' }, code), btn));
}

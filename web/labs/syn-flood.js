// syn-flood.js: the view of the syn-flood lab: the half-open and accept queues over time (sock_diag samples), the attack's window, the client's connects, the TcpExt counters and the wire's counts.
//
// Every number comes from an event and says its source: "queues" events are
// sock_diag samples (drawn as sampled points joined by lines, never as
// transitions), "counters" are the server namespace's TcpExt values since the
// run began, "wire_count" the capture's counts on the server host (with each SYN-ACK
// counted by what its TSval says about a cookie: labs/syn_flood.c), "connect"
// the legitimate client's calls. The chart is SVG with presentation
// attributes only (strict CSP: no style attributes).

import { h, replace, fmtDuration } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout } from './common.js';

const SVG = 'http://www.w3.org/2000/svg';
const W = 800;
const H = 240;
const PAD = { l: 40, r: 10, t: 10, b: 24 };
const COUNTERS = ['ListenOverflows', 'ListenDrops', 'TCPReqQFullDrop', 'TCPReqQFullDoCookies',
	'SyncookiesSent', 'SyncookiesRecv', 'SyncookiesFailed', 'TCPSynRetrans', 'TCPTimeouts', 'EmbryonicRsts'];
const MAX_SAMPLES = 2000;

function ensureStyles() {
	if (document.querySelector('link[data-view="syn-flood"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/syn-flood.css', 'data-view': 'syn-flood' } }));
}

function s(tag, attrs, text) {
	const el = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
	if (text !== undefined) el.textContent = text;
	return el;
}

// The form: these knobs first, the others under "more knobs".
export const formHints = { main: ['attack', 'rate', 'duration_ms', 'syncookies', 'backlog', 'accept', 'network'] };

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new SynFloodView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

class SynFloodView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.samples = [];
		this.conns = [];
		this.attack = null;
		this.counters = {};
		this.moved = new Set();
		this.wire = null;
		this.limit = null;
		this.svg = s('svg', { class: 'sf-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': t('sf.chart') });
		this.statusEl = h('p', { class: 'sf-status' });
		this.counterBody = h('tbody');
		this.wireEl = h('dl', { class: 'kv sf-wire' });
		this.connList = h('ol', { class: 'sf-conns' });
		this.notesEl = h('div', { class: 'sf-notes' });
		this.settingsEl = h('p', { class: 'sf-source' });
		root.appendChild(h('section', { class: 'card sf-card' },
			h('h3', { text: t('sf.queues') }),
			h('p', { class: 'help', text: t('sf.queues_help') }),
			this.settingsEl,
			h('div', { class: 'sf-legend' },
				h('span', { class: 'sf-key sf-key-half', text: t('sf.half_open') }),
				h('span', { class: 'sf-key sf-key-acc', text: t('sf.accept_queue') }),
				h('span', { class: 'sf-key sf-key-limit', text: t('sf.accept_limit') }),
				h('span', { class: 'sf-key sf-key-attack', text: t('sf.attack_window') }),
				h('span', { class: 'sf-key sf-key-conn', text: t('sf.connects_key') })),
			this.svg, this.statusEl));
		root.appendChild(h('div', { class: 'sf-grid2' },
			h('section', { class: 'card' },
				h('h3', { text: t('sf.counters') }),
				h('p', { class: 'sf-source', text: t('sf.counters_source') }),
				h('table', { class: 'sf-counters' },
					h('thead', {}, h('tr', {}, h('th', { text: t('sf.counter') }), h('th', { text: t('sf.since_start') }))),
					this.counterBody),
				h('h3', { text: t('sf.wire') }),
				h('p', { class: 'sf-source', text: t('sf.wire_source') }),
				this.wireEl),
			h('section', { class: 'card' },
				h('h3', { text: t('sf.connects') }),
				h('p', { class: 'sf-source', text: t('sf.connects_source') }),
				this.connList)));
		root.appendChild(h('section', { class: 'card' }, h('h3', { text: t('sf.explain') }), this.notesEl));
		this.drawCounters();
	}

	push(events) {
		let chart = false;
		for (const ev of events) {
			if (this.frame.take(ev)) continue;
			switch (ev.type) {
			case 'queues':
				if (this.samples.length < MAX_SAMPLES) this.samples.push(ev);
				if (typeof ev.accept_limit === 'number' && ev.listener_listed) this.limit = ev.accept_limit;
				chart = true;
				break;
			case 'connect':
				this.conns.push(ev);
				this.addConn(ev);
				chart = true;
				break;
			case 'attack':
				if (ev.phase === 'start') this.attack = { start: ev.t_us, end: null, ev };
				else if (this.attack) this.attack.end = ev.t_us;
				chart = true;
				break;
			case 'counters':
				for (const k of Object.keys(ev.changed || {})) this.moved.add(k);
				this.counters = ev.values || {};
				this.drawCounters();
				break;
			case 'wire_count':
				this.wire = ev;
				this.drawWire();
				break;
			case 'sysctl':
			case 'listen':
				this.settings(ev);
				break;
			case 'note':
				this.notesEl.appendChild(noteCallout(ev));
				break;
			case 'error':
				this.notesEl.appendChild(errorCallout(ev));
				break;
			default:
				break;
			}
		}
		if (chart) this.drawChart();
		this.frame.flush();
	}

	settings(ev) {
		this.set = this.set || [];
		if (ev.type === 'sysctl') this.set.push(`${ev.name} = ${ev.value} (${t(ev.scope === 'client namespace' ? 'sf.client_ns' : 'sf.server_ns')})`);
		else this.set.push(t('sf.listen', { addr: ev.addr, port: ev.port, backlog: ev.backlog, accepting: t(ev.accepting ? 'sf.accepting' : 'sf.not_accepting') }));
		this.settingsEl.textContent = `${t('sf.settings')} ${this.set.join(' · ')}`;
	}

	addConn(ev) {
		const res = ev.ok ? t('sf.conn_ok') : String(ev.errno || '?');
		this.connList.appendChild(h('li', { class: ev.ok ? 'sf-conn-ok' : 'sf-conn-fail', dataset: { ok: ev.ok ? '1' : '0' } },
			t('sf.conn_row', { i: ev.i, at: fmtDuration(ev.t_start_us), took: fmtDuration(ev.took_us), result: res })));
	}

	drawCounters() {
		replace(this.counterBody, COUNTERS.map((k) => h('tr', { class: this.moved.has(k) ? 'sf-moved' : '', dataset: { counter: k } },
			h('td', { text: k }), h('td', { class: 'sf-num', text: String(this.counters[k] ?? '–') }))));
	}

	drawWire() {
		const w = this.wire;
		const row = (key, v) => h('div', { dataset: { wire: key } }, h('dt', { text: t(key) }), h('dd', { text: String(v ?? 0) }));
		replace(this.wireEl,
			row('sf.syn_in', w.syn_in), row('sf.synack_out', w.synack_out),
			row('sf.synack_retrans', w.synack_retrans),
			...(w.synack_marks ? [
				row('sf.synack_cookie', w.synack_marks.cookie), row('sf.synack_not_cookie', w.synack_marks.not_cookie),
				row('sf.synack_undecided', w.synack_marks.undecided), row('sf.synack_unreadable', w.synack_marks.unreadable),
			] : []),
			row('sf.rst_in', w.rst_in),
			row('sf.capture_drops', w.capture_drops));
	}

	drawChart() {
		const svg = this.svg;
		while (svg.firstChild) svg.removeChild(svg.firstChild);
		const ts = this.samples.map((e) => e.t_kernel_us);
		for (const c of this.conns) ts.push(c.t_start_us + c.took_us);
		if (this.attack) ts.push(this.attack.end ?? this.attack.start);
		const tmax = Math.max(1000000, ...ts);
		let vmax = 4;
		for (const e of this.samples) vmax = Math.max(vmax, e.half_open, e.accept_queue, e.accept_limit + 1);
		vmax = Math.ceil(vmax * 1.15);
		const x = (tu) => PAD.l + (W - PAD.l - PAD.r) * (tu / tmax);
		const y = (v) => H - PAD.b - (H - PAD.t - PAD.b) * (v / vmax);
		if (this.attack) {
			const a = this.attack;
			svg.appendChild(s('rect', { class: 'sf-attack', x: x(a.start), y: PAD.t, width: Math.max(1, x(a.end ?? this.frame.lastT) - x(a.start)), height: H - PAD.t - PAD.b }));
		}
		for (let i = 0; i <= 4; i++) {
			const v = Math.round((vmax * i) / 4);
			svg.appendChild(s('line', { class: 'sf-grid', x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
			svg.appendChild(s('text', { class: 'sf-tick', x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
		}
		const step = tmax > 8e6 ? 2e6 : tmax > 3e6 ? 1e6 : 5e5;
		for (let tu = 0; tu <= tmax; tu += step) {
			svg.appendChild(s('text', { class: 'sf-tick', x: x(tu), y: H - 6, 'text-anchor': 'middle' }, `${(tu / 1e6).toFixed(1)} s`));
		}
		svg.appendChild(s('line', { class: 'sf-axis', x1: PAD.l, x2: PAD.l, y1: PAD.t, y2: H - PAD.b }));
		svg.appendChild(s('line', { class: 'sf-axis', x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b }));
		const line = (cls, f) => {
			if (!this.samples.length) return;
			svg.appendChild(s('polyline', { class: cls, points: this.samples.map((e) => `${x(e.t_kernel_us).toFixed(1)},${y(f(e)).toFixed(1)}`).join(' ') }));
		};
		line('sf-limit', (e) => e.accept_limit);
		line('sf-acc', (e) => e.accept_queue);
		line('sf-half', (e) => e.half_open);
		for (const e of this.samples) svg.appendChild(s('circle', { class: 'sf-dot', cx: x(e.t_kernel_us), cy: y(e.half_open), r: 1.6 }));
		for (const c of this.conns) {
			const x0 = x(c.t_start_us);
			const x1 = Math.max(x0 + 3, x(c.t_start_us + c.took_us));
			const r = s('rect', { class: c.ok ? 'sf-ok' : 'sf-fail', x: x0, y: H - PAD.b - 9, width: x1 - x0, height: 7 });
			r.appendChild(s('title', {}, t('sf.conn_row', { i: c.i, at: fmtDuration(c.t_start_us), took: fmtDuration(c.took_us), result: c.ok ? t('sf.conn_ok') : c.errno })));
			svg.appendChild(r);
		}
		const last = this.samples[this.samples.length - 1];
		this.statusEl.textContent = last
			? t('sf.now', { half: last.half_open, acc: last.accept_queue, limit: last.accept_limit, n: this.samples.length })
			: '';
	}
}

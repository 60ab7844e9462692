// tcp-echo.js: the view of the tcp-echo lab: server and client socket calls side by side, echoed messages.
//
// One trace, one row per event in seq order (the run's single clock), server
// calls on the left and client calls on the right, so cause and effect line up:
// the client's connect() next to the server's accept(), a send() next to the
// recv() that got its bytes. Notes are explanation rows across both sides.
// In "bring your own client" mode (mode=server) the panel above the trace says
// exactly how to connect, and only the server side is traced.
// With capture=on the same trace also has the segments on the wire (rows
// across both sides, at the kernel's time; a click opens the segment's fields
// with each checksum's verdict) and the kernel's states of each connection's
// two sockets in their side's column, each naming its source.

import { h, replace, fmtMs, fmtDuration, fmtAddr, fmtValue } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout, label, MAX_ROWS, LONG_ROWS, commandBox, callReturnUs } from './common.js';
import { syscallCell, failed, isEof } from './syscall.js';
import { rawBlock } from './raw.js';
import { wireCell } from './net.js';
import { checksumText, checksumVerdict } from './checksum.js';

// The form shows "Let me connect my own client" as a checkbox setting this.
// With your own client, the lab's client knobs do not apply (the form disables them).
export const formHints = {
	byo: { param: 'mode', value: 'server', clientOnly: ['messages', 'size', 'text', 'clients', 'interval_ms'] },
	main: ['mode', 'messages', 'text', 'clients', 'server_style', 'network'],
};

const SIDES = ['server', 'client'];
const KERNEL = ['state', 'observation', 'timer'];

export function create(root, ctx) {
	const frame = new RunFrame(root, ctx);
	const view = new EchoView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

class EchoView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.conns = new Set();
		this.rows = 0;
		this.hiddenRows = 0;
		this.echoes = [];
		this.echoRows = 0;
		this.metrics = new Map();
		this.byo = false;
		this.capture = false;
		this.captureCost = null;
		this.idleS = 0;
		this.lastActivity = 0;
		this.timer = null;
		this.born = performance.now();

		this.byoEl = h('section', { class: 'card byo' });
		this.byoEl.hidden = true;
		root.appendChild(this.byoEl);

		// A grid of rows rather than a <table>: appending rows to a table
		// re-lays out all of it, while block rows with content-visibility let
		// the browser skip every row that is off screen.
		this.body = h('div', { class: 'trace-body', attrs: { role: 'rowgroup' } });
		this.clientHead = h('div', { class: 'tcell c-client', attrs: { role: 'columnheader' }, text: t('echo.col.client') });
		this.table = h('div', { class: 'trace echo-trace', attrs: { role: 'table', 'aria-label': t('echo.trace') } },
			h('div', { class: 'trace-head', attrs: { role: 'rowgroup' } }, h('div', { class: 'trow', attrs: { role: 'row' } },
				h('div', { class: 'tcell c-time', attrs: { role: 'columnheader' }, text: t('echo.col.time') }),
				h('div', { class: 'tcell c-server', attrs: { role: 'columnheader' }, text: t('echo.col.server') }),
				this.clientHead)),
			this.body);
		this.scroller = h('div', { class: 'scroll trace-scroll', attrs: { tabindex: '0', 'aria-label': t('echo.trace') } }, this.table);
		this.moreEl = h('p', { class: 'muted' });
		this.moreEl.hidden = true;

		this.echoBody = h('div', { class: 'trace-body', attrs: { role: 'rowgroup' } });
		this.echoEmpty = h('p', { class: 'muted', text: t('echo.messages_empty') });
		this.echoStats = h('p', { class: 'echo-stats' });
		const head = (cls, key) => h('div', { class: `tcell ${cls}`, attrs: { role: 'columnheader' }, text: t(key) });
		this.echoTable = h('div', { class: 'echo-table', attrs: { role: 'table', 'aria-label': t('echo.messages') } },
			h('div', { class: 'echo-head', attrs: { role: 'rowgroup' } }, h('div', { class: 'erow', attrs: { role: 'row' } },
				head('idx', 'echo.m.index'), head('', 'echo.m.sent'), head('', 'echo.m.reply'),
				head('num', 'echo.m.bytes'), head('num', 'echo.m.rtt'), head('ok', 'echo.m.ok'))),
			this.echoBody);
		this.echoTable.hidden = true;
		this.echoMore = h('p', { class: 'muted' });
		this.echoMore.hidden = true;
		this.echoCard = h('section', { class: 'card echo-card' },
			h('h3', { text: t('echo.messages') }), this.echoStats, this.echoEmpty,
			h('div', { class: 'scroll echo-scroll' }, this.echoTable), this.echoMore);

		this.metricsList = h('dl', { class: 'metrics' });
		this.metricsCard = h('section', { class: 'card metrics-card' },
			h('h3', { text: t('echo.metrics') }), this.metricsList);
		this.metricsCard.hidden = true;

		root.appendChild(h('div', { class: 'echo-layout' },
			h('section', { class: 'card trace-card' },
				h('h3', { text: t('echo.trace') }),
				h('p', { class: 'help', text: t('echo.trace_help') }),
				this.scroller, this.moreEl),
			h('div', { class: 'side-panels' }, this.echoCard, this.metricsCard)));
	}

	push(events) {
		// Follow a live run at the bottom of the trace, unless the reader has
		// scrolled up. A run that is over in a blink (or a replay) stays at the
		// top, where its story starts.
		const s = this.scroller;
		const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 40;
		const follow = this.ctx.live && atBottom
			&& (this.byo || s.scrollTop > 0 || performance.now() - this.born > 1500);
		const frag = document.createDocumentFragment();
		const echoFrag = document.createDocumentFragment();
		let metricsChanged = false;
		let activity = false;

		for (const ev of events) {
			if (this.frame.take(ev)) {
				if (ev.type === 'run.start') this.onStart(ev);
				if (ev.type === 'run.end') {
					this.addRow(frag, ev, 'r-end', null, h('div', { class: 'end-mark' },
						h('span', { class: `pill pill-${String(ev.status).replace(/[^a-z]/g, '')}`, text: t(`run.status.${ev.status}`) })));
					this.onEnd();
				}
				continue;
			}
			if (ev.who === 'server') activity = true;
			switch (ev.type) {
			case 'syscall': {
				if (typeof ev.conn === 'number' && ev.conn > 0) this.conns.add(ev.conn);
				const cell = syscallCell(ev);
				if (ev.who === 'client' && ev.conn === 1 && ev.call === 'connect') this.connect1 = cell;
				this.addRow(frag, ev, `r-sc r-${sideOf(ev)}`, sideOf(ev), cell,
					failed(ev) ? 'cell-failed' : isEof(ev) ? 'cell-eof' : 'cell-call');
				break;
			}
			case 'listening':
				this.addRow(frag, ev, 'r-listen', sideOf(ev) || 'server', h('div', { class: 'sc sc-event' },
					h('span', { class: 'ev-mark', text: t('echo.listening', {
						addr: fmtAddr({ addr: ev.addr }), port: ev.port, backlog: ev.backlog ?? '?' }) })));
				this.onListening(ev);
				break;
			case 'note':
				this.addRow(frag, ev, 'r-note', null, noteCallout(ev));
				// Said where it happens too: client 1's connect() waited for ARP.
				if (ev.key === 'echo.connect_arp' && this.connect1) {
					this.connect1.appendChild(h('div', { class: 'echo-arp', attrs: { title: ev.text || '' },
						text: t('echo.arp_mark', { connect_ms: ev.params?.connect_ms ?? '?' }) }));
				}
				if (ev.key === 'echo.capture_cost' && ev.params) {
					this.captureCost = ev.params;
					this.updateEchoStats();
				}
				break;
			case 'capture':
				this.addRow(frag, ev, 'r-cap', null, h('p', { class: 'muted', text: t('echo.capture', { iface: ev.interface ?? '', filter: ev.filter ?? '' }) }));
				break;
			case 'segment':
				// One this view cannot read (not tcp-echo's fields) is shown as it came.
				if ((ev.dir === 'c2s' || ev.dir === 's2c') && typeof ev.flags_short === 'string') {
					this.addRow(frag, ev, `r-seg r-seg-${ev.dir}`, null, segmentCell(ev));
				} else {
					this.addRow(frag, ev, 'r-raw', null, rawBlock(ev));
				}
				break;
			case 'state':
			case 'observation':
			case 'timer':
				this.addRow(frag, ev, `r-state r-${sideOf(ev)}`, sideOf(ev), stateCell(ev), 'cell-event');
				break;
			case 'error':
				this.addRow(frag, ev, 'r-error', null, errorCallout(ev));
				break;
			case 'metric':
				this.metrics.set(`${ev.who || ''}:${ev.name}`, ev);
				metricsChanged = true;
				this.addRow(frag, ev, 'r-metric', sideOf(ev), h('div', { class: 'sc sc-event' },
					h('span', { class: 'ev-mark', text: metricText(ev) })), 'cell-event');
				break;
			case 'echo':
				this.addEcho(echoFrag, ev);
				break;
			case 'wire':
				this.addRow(frag, ev, 'r-wire', null, wireCell(ev));
				break;
			default:
				this.addRow(frag, ev, 'r-raw', null, rawBlock(ev));
			}
		}

		this.body.appendChild(frag);
		if (this.hiddenRows) {
			this.moreEl.textContent = t('run.truncated', { n: this.hiddenRows });
			this.moreEl.hidden = false;
		}
		this.table.classList.toggle('multi-conn', this.conns.size > 1);
		this.table.classList.toggle('long', this.rows > LONG_ROWS);
		this.echoTable.classList.toggle('long', this.echoRows > LONG_ROWS);
		if (echoFrag.firstChild) {
			this.echoBody.appendChild(echoFrag);
			this.updateEchoStats();
		}
		if (metricsChanged) this.updateMetrics();
		if (activity) this.lastActivity = performance.now();
		this.frame.flush();
		if (follow) s.scrollTop = s.scrollHeight;
	}

	addRow(frag, ev, cls, side, content, cellCls = '') {
		if (this.rows >= MAX_ROWS) {
			this.hiddenRows++;
			return;
		}
		this.rows++;
		const cell = (c, kids) => h('div', { class: `tcell ${c}`, attrs: { role: 'cell' } }, kids);
		const time = cell('c-time', fmtMs(happenedUs(ev)));
		let tr;
		if (side === 'server' || side === 'client') {
			tr = h('div', { class: `trow ${cls}`, attrs: { role: 'row' } },
				time,
				cell(side === 'server' ? `c-server ${cellCls}` : 'c-server', side === 'server' ? content : null),
				cell(side === 'client' ? `c-client ${cellCls}` : 'c-client', side === 'client' ? content : null));
		} else {
			tr = h('div', { class: `trow ${cls}`, attrs: { role: 'row' } }, time,
				h('div', { class: 'tcell c-span', attrs: { role: 'cell', 'aria-colspan': 2 } }, content));
		}
		tr.dataset.seq = ev.seq ?? '';
		frag.appendChild(tr);
	}

	addEcho(frag, ev) {
		this.echoes.push(ev);
		if (this.echoRows >= MAX_ROWS) {
			this.echoMore.textContent = t('run.truncated', { n: this.echoes.length - this.echoRows });
			this.echoMore.hidden = false;
			return;
		}
		this.echoRows++;
		const ok = ev.ok === true;
		const cell = (cls, ...kids) => h('div', { class: `tcell ${cls}`, attrs: { role: 'cell' } }, ...kids);
		frag.appendChild(h('div', { class: `erow ${ok ? 'echo-ok' : 'echo-bad'}`, attrs: { role: 'row' },
			dataset: { conn: String(ev.conn ?? ''), index: String(ev.index ?? '') } },
			cell('idx',
				typeof ev.conn === 'number' ? h('span', { class: 'conn-tag', text: `#${ev.conn}` }) : null,
				String(ev.index ?? '')),
			cell('sent', h('code', { class: 'data', text: fmtValue(ev.sent) })),
			cell('reply', h('code', { class: 'data', text: fmtValue(ev.reply) })),
			cell('num', fmtValue(ev.bytes)),
			cell('num', fmtDuration(ev.rtt_us)),
			cell('ok', h('span', {
				class: ok ? 'tick' : 'cross',
				attrs: { 'aria-label': t(ok ? 'echo.ok_yes_label' : 'echo.ok_no_label'), role: 'img' },
				text: t(ok ? 'echo.ok_yes' : 'echo.ok_no'),
			}))));
		this.echoEmpty.hidden = true;
		this.echoTable.hidden = false;
	}

	updateEchoStats() {
		const n = this.echoes.length;
		const good = this.echoes.filter((e) => e.ok === true).length;
		const rtts = this.echoes.map((e) => e.rtt_us).filter((x) => typeof x === 'number').sort((a, b) => a - b);
		const parts = [t('echo.stats_ok', { good, n })];
		if (rtts.length) {
			parts.push(t('echo.stats_rtt', {
				min: fmtDuration(rtts[0]),
				median: fmtDuration(rtts[Math.floor(rtts.length / 2)]),
				max: fmtDuration(rtts[rtts.length - 1]),
			}));
		}
		// What capturing added, measured by the run, next to the round trips.
		if (this.capture) {
			parts.push(this.captureCost
				? t('echo.stats_capture', { cpu_pct: this.captureCost.cpu_pct ?? '?', frames_per_rtt: this.captureCost.frames_per_rtt ?? '?' })
				: t('echo.stats_capture_pending'));
		}
		this.echoStats.textContent = parts.join(' · ');
		this.echoTable.classList.toggle('multi-conn', new Set(this.echoes.map((e) => e.conn)).size > 1);
	}

	updateMetrics() {
		const items = [];
		for (const ev of this.metrics.values()) {
			const name = label('metric', ev.name);
			const who = SIDES.includes(ev.who) ? t(`role.${ev.who}`) : ev.who;
			const title = who ? `${name} (${who})` : name;
			const dd = h('dd', {}, h('span', { class: 'metric-value', text: fmtValue(ev.value) }));
			if (typeof ev.max === 'number' && typeof ev.value === 'number' && ev.max > 0) {
				dd.appendChild(h('meter', { attrs: { min: 0, max: ev.max, value: Math.min(ev.value, ev.max), 'aria-label': title } }));
				dd.appendChild(h('span', { class: 'muted', text: t('echo.metric_max', { max: ev.max }) }));
			}
			items.push(h('dt', { text: title }), dd);
		}
		replace(this.metricsList, items);
		this.metricsCard.hidden = items.length === 0;
	}

	onStart(ev) {
		const p = ev.params || {};
		this.byo = p[formHints.byo.param] === formHints.byo.value;
		this.capture = p.capture === true;
		this.table.classList.toggle('trace-byo', this.byo);
		this.echoCard.hidden = this.byo;
		if (this.byo) {
			this.clientHead.textContent = t('echo.col.client_byo');
			replace(this.byoEl, h('h3', { text: t('byo.heading') }), h('p', { class: 'muted', text: t('byo.waiting') }));
			this.byoEl.hidden = false;
		}
	}

	onListening(ev) {
		if (!this.byo && ev.byo !== true) return;
		this.byo = true;
		this.table.classList.add('trace-byo');
		this.echoCard.hidden = true;
		this.clientHead.textContent = t('echo.col.client_byo');
		const host = this.ctx.byoHost || ev.addr || '127.0.0.1';
		const port = Number(ev.port);
		const nc = `nc ${host} ${port}`;
		const py = `python3 -c "import socket; s=socket.create_connection(('${host}', ${port})); s.sendall(b'hello\\n'); print(s.recv(1024))"`;
		this.idleS = typeof ev.idle_timeout_s === 'number' ? ev.idle_timeout_s : 0;
		this.lastActivity = performance.now();
		// The countdown changes every second, so it stays out of the status
		// region that announces the address.
		this.idleEl = h('p', { class: 'idle' });
		replace(this.byoEl,
			h('h3', { text: t('byo.heading') }),
			h('div', { attrs: { role: 'status' } },
				h('p', { class: 'while-live', text: t(isLoopback(host) ? 'byo.intro_local' : 'byo.intro') }),
				h('div', { class: 'byo-target' },
					h('span', { class: 'big-addr', dataset: { host, port: String(port) } },
						h('span', { class: 'byo-host', text: host }), ':', h('span', { class: 'byo-port', text: String(port) })))),
			commandBox(t('byo.nc'), nc, 'cmd-nc'),
			commandBox(t('byo.python'), py, 'cmd-python'),
			h('p', { class: 'help while-live', text: t('byo.trace_hint') }),
			this.idleEl);
		this.byoEl.hidden = false;
		if (this.ctx.live && this.idleS > 0) {
			this.tick();
			this.timer = setInterval(() => this.tick(), 1000);
		}
	}

	tick() {
		if (!this.idleEl) return;
		const left = Math.max(0, Math.ceil(this.idleS - (performance.now() - this.lastActivity) / 1000));
		this.idleEl.textContent = t('byo.idle', { idle: this.idleS, s: left });
	}

	onEnd() {
		clearInterval(this.timer);
		this.timer = null;
		if (!this.byoEl.hidden) {
			this.byoEl.classList.add('ended');
			if (this.idleEl) this.idleEl.textContent = t('byo.ended');
		}
	}

	destroy() {
		clearInterval(this.timer);
		this.timer = null;
	}

	get status() {
		return this.frame.status;
	}
}

// When an event happened, as the trace's time column shows it: a segment or
// a kernel state at the kernel's stamp, a note or a metric the observer
// emitted in its place at t_lab_us (when the lab said it), a call when it
// returned, anything else when it was emitted (the observer merges them in
// this order).
function happenedUs(ev) {
	if (typeof ev.t_kernel_us === 'number') return ev.t_kernel_us;
	if (typeof ev.t_lab_us === 'number') return ev.t_lab_us;
	if (ev.type === 'syscall') return callReturnUs(ev);
	return ev.t_us;
}

function sideOf(ev) {
	return SIDES.includes(ev.who) ? ev.who : null;
}

function isLoopback(host) {
	return /^127\./.test(host) || host === '::1' || host === 'localhost';
}

function metricText(ev) {
	let s = `${label('metric', String(ev.name))}: ${fmtValue(ev.value)}`;
	if (ev.max !== undefined) s += ` (${t('echo.metric_max', { max: ev.max })})`;
	return s;
}


// A segment on the wire, across both sides: connection, direction, flags,
// relative seq/ack, window, length and the TCP checksum's verdict; a click
// opens its layers and fields (each checksum with its verdict and why).
function segmentCell(ev) {
	const vars = {
		conn: ev.conn ?? '?',
		from: SIDES.includes(ev.from) ? t(`role.${ev.from}`) : String(ev.from ?? '?'),
		to: SIDES.includes(ev.to) ? t(`role.${ev.to}`) : String(ev.to ?? '?'),
		flags: ev.flags_short ?? '',
		seq: ev.rel_seq ?? ev.seq_raw ?? '',
		ack: ev.rel_ack ?? '',
		win: ev.win ?? '',
		len: ev.len ?? 0,
	};
	const line = t(ev.rel_ack === undefined ? 'echo.segment_noack' : 'echo.segment', vars);
	const tcp = ev.checksums && ev.checksums.tcp;
	const csum = tcp ? checksumText(tcp) : null;
	const cls = tcp && /^[a-z_]+$/.test(String(tcp.status)) ? tcp.status : 'other';
	// The badge short (the row stays one line), its title the full reason.
	const badge = !tcp ? '' : tcp.status === 'good' ? t('echo.csum_good')
		: tcp.status === 'not_computed' ? t('echo.csum_offload')
			: tcp.status === 'bad' ? t('echo.csum_bad') : t('echo.csum', { status: csum.status });
	const det = h('details', { class: 'echo-seg' },
		h('summary', {},
			h('code', { class: 'echo-seg-line', text: line }),
			ev.retransmit ? h('span', { class: 'pill echo-retrans', text: t('echo.retransmit') }) : null,
			csum ? h('span', { class: `csum-badge csum-${cls}`, attrs: { title: `${csum.status}: ${csum.why}` }, dataset: { status: String(tcp.status) }, text: badge }) : null));
	// The fields are built when first opened: a run has up to thousands of segments.
	det.addEventListener('toggle', () => {
		if (!det.open || det.dataset.built) return;
		det.dataset.built = '1';
		det.appendChild(fieldTree(ev.layers || []));
	});
	return det;
}

function fieldTree(layers) {
	const field = (f) => {
		const v = f.value !== null && typeof f.value === 'object' ? (f.text ?? JSON.stringify(f.value)) : f.value;
		const val = v === null || v === undefined ? '' : (f.text !== undefined && f.text !== v ? `${v} (${f.text})` : String(v));
		const kids = Array.isArray(f.children) && f.children.length ? h('ul', {}, f.children.map(field)) : null;
		return h('li', {}, h('span', { class: 'echo-field', text: val === '' ? f.name : `${f.name}: ${val}` }), kids, checksumVerdict(f.check));
	};
	return h('div', { class: 'echo-tree' }, layers.map((l) => h('details', { class: 'echo-layer', attrs: { open: true } },
		h('summary', { text: l.status && l.status !== 'ok' ? `${l.layer} (${l.status})` : l.layer }),
		h('ul', {}, (l.fields || []).map(field)))));
}

// A kernel report about one of a connection's sockets: a transition (the
// tracepoint), a sample (sock_diag), or the time left on its timer; each
// names its source.
function stateCell(ev) {
	const base = { who: SIDES.includes(ev.who) ? t(`role.${ev.who}`) : String(ev.who ?? '?'), conn: ev.conn ?? '?' };
	let text;
	if (ev.type === 'state') text = t('echo.state', { ...base, from: ev.from, to: ev.to });
	else if (ev.type === 'timer' && ev.stopped) text = t('echo.timer_stopped', { ...base, state: ev.state, reason: ev.reason });
	else if (ev.type === 'timer') text = t('echo.timer', { ...base, state: ev.state, s: ((ev.ms_left ?? 0) / 1000).toFixed(1) });
	else if (ev.listed === false) text = t('echo.observation_gone', { ...base, last_state: ev.last_state, reason: ev.reason });
	else text = t('echo.observation', { ...base, state: ev.state });
	return h('div', { class: `sc sc-event echo-state echo-state-${ev.type}`, attrs: { title: t('echo.source', { source: ev.source }) } },
		h('span', { class: 'ev-mark', text }),
		h('span', { class: 'muted echo-state-src', text: ` · ${ev.source}` }));
}

// tcp-echo.js: the view of the tcp-echo lab: server and client socket calls side by side, echoed messages.
//
// One trace, one row per event in seq order (the run's single clock), server
// calls on the left and client calls on the right, so cause and effect line up:
// the client's connect() next to the server's accept(), a send() next to the
// recv() that got its bytes. Notes are explanation rows across both sides.
// In "bring your own client" mode (mode=server) the panel above the trace says
// exactly how to connect, and only the server side is traced.

import { h, replace, fmtMs, fmtDuration, fmtAddr, fmtValue } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout, label, MAX_ROWS, LONG_ROWS, commandBox } from './common.js';
import { syscallCell, failed, isEof } from './syscall.js';
import { rawBlock } from './raw.js';
import { wireCell } from './net.js';

// The form shows "Let me connect my own client" as a checkbox setting this.
// With your own client, the lab's client knobs do not apply (the form disables them).
export const formHints = { byo: { param: 'mode', value: 'server', clientOnly: ['messages', 'size', 'text', 'clients', 'interval_ms'] } };

const SIDES = ['server', 'client'];

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
			case 'syscall':
				if (typeof ev.conn === 'number' && ev.conn > 0) this.conns.add(ev.conn);
				this.addRow(frag, ev, `r-sc r-${sideOf(ev)}`, sideOf(ev), syscallCell(ev),
					failed(ev) ? 'cell-failed' : isEof(ev) ? 'cell-eof' : 'cell-call');
				break;
			case 'listening':
				this.addRow(frag, ev, 'r-listen', sideOf(ev) || 'server', h('div', { class: 'sc sc-event' },
					h('span', { class: 'ev-mark', text: t('echo.listening', {
						addr: fmtAddr({ addr: ev.addr }), port: ev.port, backlog: ev.backlog ?? '?' }) })));
				this.onListening(ev);
				break;
			case 'note':
				this.addRow(frag, ev, 'r-note', null, noteCallout(ev));
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
		const time = cell('c-time', fmtMs(ev.t_us));
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
		frag.appendChild(h('div', { class: `erow ${ok ? 'echo-ok' : 'echo-bad'}`, attrs: { role: 'row' } },
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
		this.echoStats.textContent = parts.join(' · ');
		this.echoTable.classList.toggle('multi-conn', new Set(this.echoes.map((e) => e.conn)).size > 1);
	}

	updateMetrics() {
		const items = [];
		for (const ev of this.metrics.values()) {
			const name = label('metric', ev.name);
			const title = ev.who ? `${name} (${ev.who})` : name;
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


// own.js: the view of the own lab: the student's server and client side by side, every socket call, what each printed.
//
// One row per event in seq order, server on the left and client on the right
// (as in tcp-echo's trace), so the client's connect() sits next to the
// server's accept(). A program's printed lines are rows in its column (stderr
// marked, a traceback highlighted); its start and end are rows too. The form
// above holds the two programs (an editor with starters); the browser uploads
// their text with the run request.

import { h, fmtMs, fmtAddr } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout, MAX_ROWS, LONG_ROWS } from './common.js';
import { syscallCell, failed, isEof } from './syscall.js';
import { rawBlock } from './raw.js';
import { wireCell } from './net.js';
import { starters } from './own-starters.js';

// The form: a code editor per program (24 KiB each), with starter programs.
export const formHints = { editor: { maxBytes: 24 * 1024, starters }, main: ['time_limit_ms', 'network'] };

const SIDES = ['server', 'client'];
const KERNEL = ['state', 'observation', 'timer'];

export function create(root, ctx) {
	const frame = new RunFrame(root, ctx);
	const view = new OwnView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

class OwnView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.rows = 0;
		this.hiddenRows = 0;
		this.born = performance.now();
		this.body = h('div', { class: 'trace-body', attrs: { role: 'rowgroup' } });
		const head = (cls, key) => h('div', { class: `tcell ${cls}`, attrs: { role: 'columnheader' }, text: t(key) });
		this.table = h('div', { class: 'trace echo-trace own-trace', attrs: { role: 'table', 'aria-label': t('own.trace') } },
			h('div', { class: 'trace-head', attrs: { role: 'rowgroup' } }, h('div', { class: 'trow', attrs: { role: 'row' } },
				head('c-time', 'echo.col.time'), head('c-server', 'own.col.server'), head('c-client', 'own.col.client'))),
			this.body);
		this.scroller = h('div', { class: 'scroll trace-scroll', attrs: { tabindex: '0', 'aria-label': t('own.trace') } }, this.table);
		this.moreEl = h('p', { class: 'muted' });
		this.moreEl.hidden = true;
		root.appendChild(h('section', { class: 'card trace-card' },
			h('h3', { text: t('own.trace') }),
			h('p', { class: 'help', text: t('own.trace_help') }),
			this.scroller, this.moreEl));
	}

	push(events) {
		const s = this.scroller;
		const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 40;
		const follow = this.ctx.live && atBottom && (s.scrollTop > 0 || performance.now() - this.born > 1500);
		const frag = document.createDocumentFragment();
		for (const ev of events) {
			if (this.frame.take(ev)) {
				if (ev.type === 'run.end') {
					this.addRow(frag, ev, 'r-end', null, h('div', { class: 'end-mark' },
						h('span', { class: `pill pill-${String(ev.status).replace(/[^a-z]/g, '')}`, text: t(`run.status.${ev.status}`) })));
				}
				continue;
			}
			// A socket's kernel state is shown in its program's column.
			const who = KERNEL.includes(ev.type) ? ev.program : ev.who;
			const side = SIDES.includes(who) ? who : null;
			switch (ev.type) {
			case 'syscall':
				this.addRow(frag, ev, `r-sc r-${side}`, side, syscallCell(ev),
					failed(ev) ? 'cell-failed' : isEof(ev) ? 'cell-eof' : 'cell-call');
				break;
			case 'output':
				this.addRow(frag, ev, 'r-out', side, h('pre', {
					class: `own-out${ev.stream === 'stderr' ? ' own-stderr' : ''}${ev.traceback ? ' own-traceback' : ''}`,
					attrs: { title: t(ev.stream === 'stderr' ? 'own.stderr' : 'own.stdout') },
					text: ev.text,
				}), 'cell-event');
				break;
			case 'program.start':
				this.addRow(frag, ev, 'r-prog', side, h('div', { class: 'sc sc-event' },
					h('span', { class: 'ev-mark', text: t('own.started', { file: ev.file }) })), 'cell-event');
				break;
			case 'program.exit':
				this.addRow(frag, ev, 'r-prog', side, h('div', { class: 'sc sc-event' },
					h('span', { class: 'ev-mark', text: exitText(ev) })), ev.how === 'exited' && ev.code === 0 ? 'cell-event' : 'cell-failed');
				break;
			case 'segment':
				this.addRow(frag, ev, 'r-seg', null, h('div', { class: 'own-seg' },
					h('span', { class: 'own-seg-dir', text: `${fmtAddr(ev.src)} → ${fmtAddr(ev.dst)}` }),
					h('code', { text: t('own.segment', {
						flags: ev.flags_short ?? '', seq: ev.seq_raw ?? '', ack: ev.ack_raw ?? '',
						win: ev.win ?? '', len: ev.len ?? 0 }) })));
				break;
			case 'capture':
				this.addRow(frag, ev, 'r-cap', null, h('p', { class: 'muted', text: t('own.capture', { iface: ev.interface ?? '', filter: ev.filter ?? '' }) }));
				break;
			case 'note':
				this.addRow(frag, ev, 'r-note', null, noteCallout(ev));
				break;
			case 'error':
				this.addRow(frag, ev, 'r-error', null, errorCallout(ev));
				break;
			case 'state':
			case 'observation':
			case 'timer':
				this.addRow(frag, ev, `r-state r-${side}`, side, stateCell(ev), 'cell-event');
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
		this.table.classList.toggle('long', this.rows > LONG_ROWS);
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
		let row;
		if (side) {
			row = h('div', { class: `trow ${cls}`, attrs: { role: 'row' } }, time,
				cell(side === 'server' ? `c-server ${cellCls}` : 'c-server', side === 'server' ? content : null),
				cell(side === 'client' ? `c-client ${cellCls}` : 'c-client', side === 'client' ? content : null));
		} else {
			row = h('div', { class: `trow ${cls}`, attrs: { role: 'row' } }, time,
				h('div', { class: 'tcell c-span', attrs: { role: 'cell', 'aria-colspan': 2 } }, content));
		}
		row.dataset.seq = ev.seq ?? '';
		frag.appendChild(row);
	}

	destroy() {}

	get status() {
		return this.frame.status;
	}
}

function exitText(ev) {
	const calls = { calls: ev.calls ?? 0, sent: ev.bytes_sent ?? 0, received: ev.bytes_received ?? 0 };
	if (ev.how === 'exited') return t('own.exited', { code: ev.code, ...calls });
	return t(ev.how === 'stopped' ? 'own.stopped' : 'own.killed', { signal: `SIG${ev.signal}`, ...calls });
}

// A kernel report about one of the programs' sockets: a transition (the
// tracepoint), a sample (sock_diag), or the time left on its timer; each
// names its source.
function stateCell(ev) {
	const base = { who: ev.who, fd: ev.fd ?? '?' };
	let text;
	if (ev.type === 'state') text = t('own.state', { ...base, from: ev.from, to: ev.to });
	else if (ev.type === 'timer' && ev.stopped) text = t('own.timer_stopped', { ...base, state: ev.state, reason: ev.reason });
	else if (ev.type === 'timer') text = t('own.timer', { ...base, state: ev.state, s: ((ev.ms_left ?? 0) / 1000).toFixed(1) });
	else if (ev.listed === false) text = t('own.observation_gone', { ...base, last_state: ev.last_state, reason: ev.reason });
	else text = t('own.observation', { ...base, state: ev.state });
	return h('div', { class: `sc sc-event own-state own-state-${ev.type}`, attrs: { title: t('own.source', { source: ev.source }) } },
		h('span', { class: 'ev-mark', text }),
		h('span', { class: 'muted own-state-src', text: ` · ${ev.source}` }));
}

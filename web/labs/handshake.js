// handshake.js: the view of the handshake lab: ladder diagram, state timelines, socket calls, packet list with field tree and hex bytes.
//
// Everything drawn comes from the run's events: `segment` (one per captured
// segment, decoded, with byte offsets for every field), `state` (a
// transition: the kernel's tracepoint, or the RFC 9293 model fed by the
// packets, source "rfc-model"), `observation` (a sample: sock_diag or
// TCP_INFO saw a socket in a state at a time, or sock_diag no longer lists
// it, with the reason), `timer` (the kernel's own countdown, read from
// sock_diag, and where it stopped), `state.compare` (kernel vs model) and the socket calls
// (`syscall`). The ladder is one SVG built with DOM calls: client on the
// left, server on the right, time downwards, one row per segment or call in
// the order the kernel stamped them.

import { h, replace, fmtMs, fmtAddr } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, callReturnUs, errorCallout, noteCallout } from './common.js';
import { rawBlock } from './raw.js';
import { wireCell } from './net.js';
import { checksumVerdict } from './checksum.js';

const SVG = 'http://www.w3.org/2000/svg';
const SIDES = ['client', 'server'];
const KERNEL = new Set(['tracepoint', 'sock_diag', 'tcp_info']);
const MODEL = 'rfc-model';
// Room for a call's label on either side ("recv() ECONNRESET" is 18
// characters) between the lane and the state column.
const WIDTH = 880;
const X_WIDE = { tlClient: 6, callClient: 252, client: 266, server: 606, callServer: 620, tlServer: 764 };
const TL_WIDE = 110;
const SEG_H = 40;
const CALL_H = 22;
const ARR_H = 16;
const TOP = 34;
// The compact ladder (a box narrower than WIDTH: a pane beside another run)
// is drawn at the box's width: narrower state columns, call names between
// the lanes on their own rows, and labels wrapped on spaces into lines that
// fit (each row as tall as its lines), so nothing is cut and nothing
// scrolls sideways. The narrowest it lays out is MIN_W.
const MIN_W = 340;
const LINE = 13; // a segment label's line
const TLINE = 11; // a time's or a state's line
const NUM_W = 30; // room for "#12" at the end of an arrow

// The wide layout: the ladder as it always was.
const WIDE = { compact: false, width: WIDTH, X: X_WIDE, tlW: TL_WIDE };

// The layout for a box w pixels wide.
function layoutFor(w) {
	if (!(w < WIDTH) || document.body.classList.contains('presenter')) return WIDE;
	const width = Math.max(MIN_W, Math.floor(w));
	const tlW = width < 440 ? 80 : 92;
	const client = 2 + tlW + 24;
	const server = width - client;
	return {
		compact: true, width, tlW,
		X: { tlClient: 2, callClient: client - 7, client, server, callServer: server + 7, tlServer: width - 2 - tlW },
	};
}

// Text widths as the ladder's stylesheet sets them (its mono font), for
// wrapping before anything is drawn.
let measureCtx = null;
function textWidth(text, px, bold) {
	if (!measureCtx) measureCtx = document.createElement('canvas').getContext('2d');
	const mono = getComputedStyle(document.documentElement).getPropertyValue('--mono').trim() || 'monospace';
	measureCtx.font = `${bold ? '600 ' : ''}${px}px ${mono}`;
	return measureCtx.measureText(text).width;
}

// Words into lines of at most w pixels (a word wider than w has a line of
// its own, and is wider than w: the layout's columns fit every state name
// and call). Every line but the last keeps its trailing space, so the lines
// joined are the text again. A field and its number ("seq 1", "len 12")
// stay together; a time's two halves ("sent … · … on the wire") break at
// the dot first.
// Chinese has no spaces: a line may break after any CJK character or mark.
const SPACES = /(?<=[ \u3000-\u30ff\u4e00-\u9fff\uff00-\uffef])/;
const FIELDS = /(?<= )(?!\d)/;
const HALVES = /(?<=· )/;
function wrap(text, w, px, bold, at = SPACES) {
	const fits = (x) => textWidth(x.trimEnd(), px, bold) <= w;
	const greedy = (units) => {
		const lines = [];
		let cur = '';
		for (const u of units) {
			if (cur && !fits(cur + u)) {
				lines.push(cur);
				cur = u;
			} else {
				cur += u;
			}
		}
		if (cur) lines.push(cur);
		return lines;
	};
	const lines = greedy(String(text).split(at));
	const out = at === SPACES ? lines : lines.flatMap((l) => (fits(l) ? [l] : greedy(l.split(SPACES))));
	return out.length ? out : [''];
}

// A text of several lines: one tspan a line, each at x, dy apart.
function svgLines(x, y, lines, cls, anchor, dy) {
	const el = svg('text', { x, y, class: cls, 'text-anchor': anchor });
	lines.forEach((line, i) => el.appendChild(svg('tspan', { x, dy: i ? dy : null }, line)));
	return el;
}

// Stylesheet of this view, loaded once (no inline styles: strict CSP).
function ensureStyles() {
	if (document.querySelector('link[data-view="handshake"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/handshake.css', 'data-view': 'handshake' } }));
}

// Runs fn once the view's stylesheet applies: a label's box measured
// before it does is the default font's (taller and wider than the ladder's
// 11 px mono), and would stay so after the sheet arrives.
function whenStyled(fn) {
	const link = document.querySelector('link[data-view="handshake"]');
	if (!link || link.sheet) {
		fn();
		return;
	}
	link.addEventListener('load', fn, { once: true });
}

function svg(tag, attrs, ...kids) {
	const el = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
	}
	for (const k of kids) {
		if (k === null || k === undefined || k === false) continue;
		el.appendChild(typeof k === 'string' ? document.createTextNode(k) : k);
	}
	return el;
}

function svgText(x, y, text, cls, anchor = 'start') {
	const el = svg('text', { x, y, class: cls, 'text-anchor': anchor });
	el.textContent = text;
	return el;
}

// A call's label: its name and what it returned (the errno's name when it failed).
function callLabel(c) {
	return `${c.call}()${c.ret === -1 ? ` ${c.errno_name || ''}` : ` = ${c.ret}`}`;
}

// The form offers a recorded capture to replay (uploaded; the server saves
// it and sets the server-assigned replay parameter).
export const formHints = {
	upload: { param: 'replay', maxBytes: 47 * 1024, accept: '.pcap,.pcapng,.cap' },
	main: ['scenario', 'data', 'reply', 'network'],
};

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new HandshakeView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

// The window a segment offered: the bytes the kernel meant (the field
// scaled by the sender's window scale, win_bytes, which the decoder gives
// once both SYNs carried the option), or the field itself when raw is asked
// for or no scale applies (SYNs are never scaled).
export function windowOf(s, raw) {
	if (!raw && typeof s.win_bytes === 'number') return s.win_bytes;
	return s.win;
}

// The segment's label on its arrow: flags, seq/ack (relative or absolute), len, win.
export function segmentLabel(s, absolute, rawWin) {
	const seq = absolute ? s.seq_raw : s.rel_seq;
	const ack = absolute ? s.ack_raw : s.rel_ack;
	const parts = [`[${(s.flags || []).join(', ') || t('hs.no_flags')}]`, `seq ${seq ?? '?'}`];
	if (Array.isArray(s.flags) && s.flags.includes('ACK')) parts.push(`ack ${ack ?? '?'}`);
	parts.push(`len ${s.len ?? 0}`, `win ${windowOf(s, rawWin) ?? '?'}`);
	return parts.join(' ');
}

// A Wireshark-style Info column: ports, flags, Seq/Ack (relative or
// absolute), Win (scaled or raw), Len and the options by name.
export function infoText(s, absolute, rawWin) {
	const flags = Array.isArray(s.flags) ? s.flags : [];
	const parts = [`${s.src?.port ?? '?'} → ${s.dst?.port ?? '?'}`, `[${flags.join(', ') || t('hs.no_flags')}]`,
		`Seq=${absolute ? s.seq_raw : s.rel_seq}`];
	if (flags.includes('ACK')) parts.push(`Ack=${absolute ? s.ack_raw : s.rel_ack}`);
	parts.push(`Win=${windowOf(s, rawWin) ?? '?'}`, `Len=${s.len ?? 0}`);
	for (const o of Array.isArray(s.options) ? s.options : []) {
		if (o.name === 'mss') parts.push(`MSS=${o.value}`);
		else if (o.name === 'sack_perm') parts.push('SACK_PERM');
		else if (o.name === 'timestamp' && o.value) parts.push(`TSval=${o.value.val}`, `TSecr=${o.value.ecr}`);
		else if (o.name === 'wscale' && typeof o.value === 'number') parts.push(`WS=${2 ** o.value}`);
		else if (o.name === 'sack' && Array.isArray(o.value)) parts.push(`SACK=${o.value.map((b) => `${b.left ?? b[0]}-${b.right ?? b[1]}`).join(',')}`);
	}
	return parts.join(' ');
}

// Wireshark's colouring rules, simplified: bad first, then RST, SYN/FIN, data.
function rowKind(s) {
	const flags = Array.isArray(s.flags) ? s.flags : [];
	if ((s.status && s.status !== 'ok') || Object.values(s.checksums || {}).some((k) => k && k.status === 'bad')) return 'bad';
	if (flags.includes('RST')) return 'rst';
	if (flags.includes('SYN') || flags.includes('FIN')) return 'synfin';
	return s.len > 0 ? 'data' : 'ack';
}

class HandshakeView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.segs = [];
		this.arrivals = new Map(); // segment n -> {t, wire_us, copies}
		this.twoHosts = false;
		this.wireDelayed = 0;
		this.calls = [];
		this.states = [];
		this.observations = [];
		this.compare = {};
		this.timer = {};
		this.notes = [];
		this.absolute = false;
		this.rawWin = false;
		this.wires = []; // the relay's records of frames (delay, drop, duplicate)
		this.selected = null;
		this.highlight = null; // {segs: Set, calls: Set, states: Set}
		this.ended = false;
		this.tick = null;

		this.absBox = h('input', { attrs: { type: 'checkbox', id: 'hs-absolute' } });
		this.absBox.addEventListener('change', () => {
			this.absolute = this.absBox.checked;
			this.render();
			this.refreshDetail();
		});
		this.rawWinBox = h('input', { attrs: { type: 'checkbox', id: 'hs-rawwin' } });
		this.rawWinBox.addEventListener('change', () => {
			this.rawWin = this.rawWinBox.checked;
			this.render();
			this.refreshDetail();
		});
		this.pcapEl = h('span', { class: 'hs-pcap' });
		this.captureEl = h('p', { class: 'help hs-capture' });
		this.ladderBox = h('div', { class: 'hs-ladder-box' });
		this.hintEl = h('p', { class: 'help', text: t('hs.ladder_help') });
		// What each mark on the state timelines is, and where it came from.
		this.legendEl = h('p', { class: 'help hs-legend' },
			h('span', { class: 'hs-key hs-key-transition' }), ` ${t('hs.legend.transition')}  `,
			h('span', { class: 'hs-key hs-key-sample' }), ` ${t('hs.legend.sample')}  `,
			h('span', { class: 'hs-key hs-key-model' }), ` ${t('hs.legend.model')}`);
		this.listBody = h('tbody');
		this.detailEl = h('div', { class: 'hs-detail' }, h('p', { class: 'muted', text: t('hs.select_packet') }));
		this.compareEl = h('div', { class: 'hs-compare' });
		this.notesEl = h('div', { class: 'hs-notes' });
		this.rawEl = h('div', { class: 'hs-raw' });

		root.appendChild(h('section', { class: 'card hs-card' },
			h('div', { class: 'hs-toolbar' },
				h('h3', { text: t('hs.ladder') }),
				h('label', { class: 'hs-toggle', attrs: { for: 'hs-absolute' } }, this.absBox, ' ', t('hs.absolute')),
				h('label', { class: 'hs-toggle', attrs: { for: 'hs-rawwin', title: t('hs.rawwin_help') } }, this.rawWinBox, ' ', t('hs.rawwin')),
				this.pcapEl),
			this.captureEl, this.hintEl, this.legendEl, this.ladderBox));
		// The packet view, Wireshark's three panes: the list, and beside it
		// the selected packet's fields over its bytes.
		root.appendChild(h('section', { class: 'card hs-packet-view' },
			h('h3', { text: t('hs.packets') }),
			h('div', { class: 'hs-columns' },
				h('div', { class: 'hs-packets' },
					h('div', { class: 'hs-list-scroll' },
						h('table', { class: 'hs-list' },
							h('thead', {}, h('tr', {},
								['#', t('hs.col.time'), t('hs.col.dir'), t('hs.col.len'), t('hs.col.info')]
									.map((c) => h('th', { text: c })))),
							this.listBody))),
				h('div', { class: 'hs-detail-card' }, h('h4', { class: 'hs-detail-title', text: t('hs.detail') }), this.detailEl))));
		root.appendChild(h('section', { class: 'card hs-compare-card' },
			h('h3', { text: t('hs.compare') }),
			h('p', { class: 'help', text: t('hs.compare_help') }),
			this.compareEl));
		root.appendChild(h('section', { class: 'card hs-notes-card' }, h('h3', { text: t('hs.notes') }), this.notesEl, this.rawEl));
		// The ladder is laid out for its box's width: drawn again when the
		// box changes to another layout (beside another run, presenter mode).
		if (typeof ResizeObserver === 'function') {
			this.resizer = new ResizeObserver(() => {
				const L = layoutFor(this.ladderBox.clientWidth || WIDTH);
				if (this.L && (L.compact !== this.L.compact || L.width !== this.L.width)) this.render();
			});
			this.resizer.observe(this.ladderBox);
		}
	}

	push(events) {
		let changed = false;
		for (const ev of events) {
			if (this.frame.take(ev)) {
				if (ev.type === 'run.start') this.twoHosts = !!(ev.network && ev.network.kind === 'two-hosts');
				if (ev.type === 'run.end') this.onEnd(ev);
				changed = true;
				continue;
			}
			changed = true;
			switch (ev.type) {
			case 'segment':
				this.segs.push(ev);
				break;
			case 'arrival': {
				// Two hosts: when a segment reached the other host.
				const a = this.arrivals.get(ev.n);
				if (a) a.copies++;
				else this.arrivals.set(ev.n, { t: ev.t_kernel_us, wire_us: ev.wire_us, copies: 1 });
				break;
			}
			case 'wire':
				// Every frame is delayed on purpose: counted; anything else the
				// wire did (drop, duplicate, reorder) is shown.
				this.wires.push(ev);
				if (ev.action === 'delay') this.wireDelayed++;
				else this.notesEl.appendChild(wireCell(ev));
				break;
			case 'syscall':
				if (SIDES.includes(ev.who)) this.calls.push(ev);
				break;
			case 'state':
				this.states.push(ev);
				break;
			case 'observation':
				this.observations.push(ev);
				break;
			case 'state.compare':
				this.compare[ev.who] = ev;
				break;
			case 'timer':
				// The kernel's own timer, read by sock_diag while the socket
				// exists; a last one says it stopped, and why.
				if (ev.stopped) this.timer[ev.who] = { stopped: true, reason: ev.reason, state: ev.state, ms: ev.ms_left_last, live: false };
				else this.timer[ev.who] = { ms: ev.ms_left, at: performance.now(), live: this.ctx.live && !this.ended };
				break;
			case 'capture':
				this.captureEl.textContent = t(Array.isArray(ev.hosts) && ev.hosts.length > 1 ? 'hs.capture_hosts' : 'hs.capture',
					{ iface: ev.interface || '?', filter: ev.filter || '' });
				break;
			case 'note':
				this.notesEl.appendChild(noteCallout(ev));
				break;
			case 'error':
				this.notesEl.appendChild(errorCallout(ev));
				break;
			default:
				this.rawEl.appendChild(rawBlock(ev));
			}
		}
		if (changed) this.render();
		this.frame.flush();
	}

	onEnd(ev) {
		this.ended = true;
		for (const tm of Object.values(this.timer)) tm.live = false;
		const p = (this.frame.params || {});
		if (this.ctx.runId && !p.replay) {
			replace(this.pcapEl, h('a', {
				class: 'download hs-pcap-link',
				attrs: { href: `/api/runs/${encodeURIComponent(this.ctx.runId)}/capture.pcap`, download: `socklab-${this.ctx.runId}.pcap` },
				text: t('hs.pcap'),
			}));
		}
		if (ev.status !== 'ok' && !this.segs.length) this.hintEl.textContent = t('hs.no_segments');
	}

	destroy() {
		clearInterval(this.tick);
		this.tick = null;
		if (this.resizer) this.resizer.disconnect();
	}

	get status() {
		return this.frame.status;
	}

	// ---- layout: rows in the order the kernel stamped things ----

	// What the ladder lays out: every segment, arrival, call and state of
	// the run the player holds, so the layout stays put while the run is
	// stepped; what the view has not reached yet (seq after cur) is drawn
	// greyed and is not counted as having happened.
	source() {
		const all = this.ctx.allEvents ? this.ctx.allEvents() : null;
		if (!all) {
			return { segs: this.segs, arrivals: this.arrivals, calls: this.calls, states: this.states,
				observations: this.observations, cur: Infinity };
		}
		const cur = this.frame.lastSeq;
		const src = { segs: [], arrivals: new Map(), calls: [], states: [], observations: [], cur };
		for (const ev of all) {
			switch (ev.type) {
			case 'segment':
				src.segs.push(ev);
				break;
			case 'arrival': {
				const a = src.arrivals.get(ev.n);
				if (!a) src.arrivals.set(ev.n, { t: ev.t_kernel_us, wire_us: ev.wire_us, copies: 1, seq: ev.seq });
				else if (ev.seq <= cur) a.copies++;
				break;
			}
			case 'syscall':
				if (SIDES.includes(ev.who)) src.calls.push(ev);
				break;
			case 'state':
				src.states.push(ev);
				break;
			case 'observation':
				src.observations.push(ev);
				break;
			default:
				break;
			}
		}
		return src;
	}

	rows(src) {
		const L = this.L;
		const items = [];
		for (const s of src.segs) items.push({ kind: 'seg', t: s.t_kernel_us, ev: s, future: s.seq > src.cur });
		// Two hosts: a row where each segment reaches the other host.
		for (const [n, a] of src.arrivals) items.push({ kind: 'arr', t: a.t, n, future: a.seq > src.cur });
		for (const c of src.calls) items.push({ kind: 'call', t: c.t_call_us ?? c.t_us, ev: c, future: c.seq > src.cur });
		const order = { call: 0, arr: 1, seg: 2 };
		items.sort((a, b) => a.t - b.t || order[a.kind] - order[b.kind]);
		let y = TOP;
		for (const it of items) {
			it.y = y;
			it.h = it.kind === 'seg' ? SEG_H : it.kind === 'arr' ? ARR_H : CALL_H;
			if (L.compact && it.kind === 'seg') this.fitSegment(it, src);
			if (L.compact && it.kind === 'call') this.fitCall(it);
			y += it.h;
		}
		return { items, height: y + 50 };
	}

	// Compact: a segment's label and time wrapped between the lanes (the
	// last label line leaves room for "#n" at the arrow's end); the row is
	// as tall as its lines. The time is laid out as it reads at the end of
	// the run, so stepping never moves a row.
	fitSegment(it, src) {
		const gap = this.L.X.server - this.L.X.client - 20;
		const s = it.ev;
		let lines = wrap(segmentLabel(s, this.absolute, this.rawWin), gap, 11.5, false, FIELDS);
		const last = lines.pop();
		lines = lines.concat(wrap(last, gap - 2 * NUM_W, 11.5, false, FIELDS));
		const a = src.arrivals.get(s.n);
		const when = a ? t('hs.sent_arrived', { sent: fmtMs(s.t_kernel_us), wire: fmtMs(a.wire_us) }) : `${fmtMs(s.t_kernel_us)} ms`;
		it.lines = lines;
		it.timeLines = wrap(when, gap, 10, false, HALVES);
		it.h = SEG_H + (lines.length - 1) * LINE + (it.timeLines.length - 1) * (TLINE + 2);
	}

	// Compact: a call's name and result between the lanes, on its row.
	fitCall(it) {
		const gap = this.L.X.server - this.L.X.client - 12;
		it.lines = wrap(callLabel(it.ev), gap, 11);
		it.h = CALL_H + (it.lines.length - 1) * TLINE;
	}

	// The y where something stamped at time us happened: after the last row
	// at or before it.
	yAt(items, us) {
		let y = TOP - 8;
		for (const it of items) {
			if (it.t <= us) y = it.y + (it.kind === 'seg' ? it.h / 2 + 4 : it.kind === 'arr' ? ARR_H / 2 : it.h / 2);
			else break;
		}
		return y;
	}

	render() {
		const src = this.source();
		this.src = src;
		this.L = layoutFor(this.ladderBox.clientWidth || WIDTH);
		const L = this.L;
		const X = L.X;
		const TL_W = L.tlW;
		const { items, height } = this.rows(src);
		const root = svg('svg', {
			class: `hs-ladder${L.compact ? ' hs-compact' : ''}`, viewBox: `0 0 ${L.width} ${height}`, width: L.width, height,
			role: 'img', 'aria-label': t('hs.ladder_label', { n: this.segs.length }),
		});
		root.appendChild(svg('defs', {},
			svg('marker', { id: 'hs-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
				svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'hs-arrowhead' }))));
		// Heads and lanes.
		root.appendChild(svgText(X.client, 18, t('hs.client'), 'hs-head hs-head-client', 'middle'));
		root.appendChild(svgText(X.server, 18, t('hs.server'), 'hs-head hs-head-server', 'middle'));
		root.appendChild(svgText(X.tlClient + TL_W / 2, 18, t('hs.states'), 'hs-head-small', 'middle'));
		root.appendChild(svgText(X.tlServer + TL_W / 2, 18, t('hs.states'), 'hs-head-small', 'middle'));
		root.appendChild(svg('line', { x1: X.client, y1: 24, x2: X.client, y2: height - 10, class: 'hs-lane hs-lane-client' }));
		root.appendChild(svg('line', { x1: X.server, y1: 24, x2: X.server, y2: height - 10, class: 'hs-lane hs-lane-server' }));

		for (const side of SIDES) this.drawTimeline(root, items, side, height, src);
		const arrY = new Map();
		for (const it of items) if (it.kind === 'arr') arrY.set(it.n, it.y + ARR_H / 2 + 2);
		for (const it of items) {
			if (it.kind === 'seg') this.drawSegment(root, it, arrY, src);
			else if (it.kind === 'call') this.drawCall(root, items, it);
		}
		replace(this.ladderBox, root);
		whenStyled(() => labelBackgrounds(root));
		this.renderList();
		this.renderCompare();
		this.scheduleTick();
	}

	drawSegment(root, it, arrY, src) {
		const { X, compact } = this.L;
		const s = it.ev;
		const c2s = s.dir === 'c2s';
		const x1 = c2s ? X.client : X.server;
		let x2 = c2s ? X.server : X.client;
		const extra = compact ? (it.lines.length - 1) * LINE : 0;
		const y1 = it.y + 14 + extra;
		let y2 = it.y + SEG_H - 6 + extra;
		// Over two hosts the arrow ends where the segment arrived; one that has
		// not arrived (yet, or ever: the wire lost it) stops half way.
		const arrived = arrY.get(s.n);
		const a = src.arrivals.get(s.n);
		const lost = this.twoHosts && arrived === undefined;
		if (this.twoHosts && arrived !== undefined) y2 = Math.max(y1 + 8, arrived);
		if (lost) x2 = (x1 + x2) / 2;
		// Sent, and its arrival still ahead of the view: in flight.
		const inFlight = !it.future && a && a.seq > src.cur;
		const flags = Array.isArray(s.flags) ? s.flags : [];
		const cls = ['hs-seg', c2s ? 'hs-c2s' : 'hs-s2c'];
		if (flags.includes('SYN')) cls.push('hs-syn');
		if (flags.includes('FIN')) cls.push('hs-fin');
		if (flags.includes('RST')) cls.push('hs-rst');
		if (s.len > 0) cls.push('hs-data');
		if (it.future) cls.push('hs-future');
		if (inFlight) cls.push('hs-inflight');
		if (this.selected === s.n) cls.push('hs-selected');
		if (this.highlight && this.highlight.segs.has(s.n)) cls.push('hs-hl');
		const g = svg('g', { class: cls.join(' '), 'data-n': s.n, 'data-seq': s.seq, tabindex: 0, role: 'button',
			'aria-label': t('hs.segment_label', { n: s.n, label: segmentLabel(s, this.absolute, this.rawWin) }) });
		// The whole row answers clicks, not just the thin arrow.
		g.appendChild(svg('rect', { x: X.client, y: it.y, width: X.server - X.client, height: it.h, class: 'hs-hit' }));
		if (lost) cls.push('hs-lost');
		g.setAttribute('class', cls.join(' '));
		g.appendChild(svg('line', { x1, y1, x2, y2, class: 'hs-arrow-line', 'marker-end': lost || inFlight ? null : 'url(#hs-arrow)' }));
		const mid = (X.client + X.server) / 2;
		g.appendChild(compact ? svgLines(mid, it.y + 10, it.lines, 'hs-seg-label', 'middle', LINE)
			: svgText(mid, it.y + 10, segmentLabel(s, this.absolute, this.rawWin), 'hs-seg-label', 'middle'));
		g.appendChild(svgText(c2s ? x1 + 6 : x1 - 6, y1 - 4, `#${s.n}`, 'hs-seg-n', c2s ? 'start' : 'end'));
		const seen = a && !inFlight && !it.future;
		const when = seen ? t('hs.sent_arrived', { sent: fmtMs(s.t_kernel_us), wire: fmtMs(a.wire_us) }) : `${fmtMs(s.t_kernel_us)} ms`;
		// Compact: the time's first line where a loopback arrow ends (a long
		// two-hosts arrow goes on below it), so its lines stay in the row.
		const ty = compact ? Math.min(y2, it.y + SEG_H - 6 + extra) + 4 : Math.min(y2, it.y + SEG_H) + 4;
		const timeEl = compact ? svgLines(mid, ty, wrap(when, X.server - X.client - 20, 10, false, HALVES), 'hs-seg-time', 'middle', TLINE)
			: svgText(mid, ty, when, 'hs-seg-time', 'middle');
		if (seen) timeEl.appendChild(svg('title', {}, this.wireWhy(s, a)));
		g.appendChild(timeEl);
		if (lost && this.ended) g.appendChild(svgText(x2, y2 + 4, '✗', 'hs-seg-bad', 'middle'));
		if (seen && a.copies > 1) g.appendChild(svgText(c2s ? X.server - 6 : X.client + 6, y2 - 4, `×${a.copies}`, 'hs-seg-bad', c2s ? 'end' : 'start'));
		if (s.status && s.status !== 'ok') g.appendChild(svgText(x2, y2 + 4, `⚠ ${s.status}`, 'hs-seg-bad', c2s ? 'end' : 'start'));
		const pick = () => this.select(s.n);
		g.addEventListener('click', pick);
		g.addEventListener('keydown', (e) => {
			if (e.key === 'Enter' || e.key === ' ') {
				e.preventDefault();
				pick();
			}
		});
		root.appendChild(g);
	}

	drawCall(root, items, it) {
		const { X, compact } = this.L;
		const c = it.ev;
		const client = c.who === 'client';
		const yEnd = Math.max(it.y + it.h - 6, this.yAt(items, callReturnUs(c)));
		const x = client ? X.callClient : X.callServer;
		const failed = c.ret === -1;
		const cls = ['hs-call', client ? 'hs-call-client' : 'hs-call-server'];
		if (failed) cls.push('hs-call-failed');
		if (this.highlight && this.highlight.calls.has(c.seq)) cls.push('hs-hl');
		if (it.future) cls.push('hs-future');
		const g = svg('g', { class: cls.join(' '), 'data-call': c.call, 'data-seq': c.seq, tabindex: 0, role: 'button',
			'aria-label': t('hs.call_label', { call: c.call, who: c.who }) });
		g.appendChild(svg('line', { x1: x, y1: it.y + 4, x2: x, y2: yEnd, class: 'hs-call-bar' }));
		if (compact) {
			// Between the lanes, beside its own lane, on its own row.
			const lx = client ? X.client + 6 : X.server - 6;
			const w = Math.max(...it.lines.map((l) => textWidth(l, 11)));
			g.appendChild(svg('rect', { x: client ? x : lx - w, y: it.y, width: Math.abs(lx - x) + w, height: it.h, class: 'hs-hit' }));
			g.appendChild(svgLines(lx, it.y + 14, it.lines, 'hs-call-label', client ? 'start' : 'end', TLINE));
		} else {
			g.appendChild(svg('rect', { x: client ? x - 130 : x, y: it.y, width: 130, height: CALL_H, class: 'hs-hit' }));
			g.appendChild(svgText(client ? x - 6 : x + 6, it.y + 14, callLabel(c), 'hs-call-label', client ? 'end' : 'start'));
		}
		const pick = () => this.highlightCall(c);
		g.addEventListener('click', pick);
		g.addEventListener('keydown', (e) => {
			if (e.key === 'Enter' || e.key === ' ') {
				e.preventDefault();
				pick();
			}
		});
		root.appendChild(g);
	}

	// The kernel's states of one side as blocks along time: solid from a
	// transition the tracepoint reported, hatched from a sample (sock_diag,
	// TCP_INFO: "seen in this state then", not a change anyone saw), and a
	// gone block where sock_diag no longer lists the socket. The RFC model's
	// changes are marks beside them; TIME_WAIT's countdown is the kernel's.
	drawTimeline(root, items, side, height, src) {
		const { X, tlW: TL_W, compact } = this.L;
		const x0 = side === 'client' ? X.tlClient : X.tlServer;
		const kernel = src.states.filter((s) => s.who === side && KERNEL.has(s.source));
		const model = src.states.filter((s) => s.who === side && s.source === MODEL && s.seq <= src.cur);
		const seen = src.observations.filter((o) => o.who === side);
		const segY = new Map();
		for (const it of items) if (it.kind === 'seg') segY.set(it.ev.n, it.y + it.h / 2 + 4);
		const marks = [];
		for (const s of kernel) marks.push({ y: this.yAt(items, s.t_kernel_us), ev: s, st: s.to, kind: 'transition' });
		for (const o of seen) {
			const gone = o.listed === false;
			marks.push({ y: this.yAt(items, o.t_kernel_us), ev: o, st: gone ? 'CLOSED' : o.state, kind: gone ? 'gone' : 'sample' });
		}
		marks.sort((a, b) => a.y - b.y || (a.ev.seq ?? 0) - (b.ev.seq ?? 0));
		// Before its first transition the socket was in that transition's
		// "from" state (CLOSED for a client, LISTEN for the server's socket).
		if (marks.length && marks[0].kind === 'transition' && marks[0].y > TOP) {
			marks.unshift({ y: TOP, ev: { from: marks[0].ev.from, source: marks[0].ev.source, seq: -1 }, st: marks[0].ev.from, kind: 'initial' });
		}
		const stopped = this.timer[side] && this.timer[side].stopped;
		const g = svg('g', { class: `hs-timeline hs-timeline-${side}`, 'data-who': side });
		for (let i = 0; i < marks.length; i++) {
			const m = marks[i];
			const yEnd = i + 1 < marks.length ? marks[i + 1].y : height - 16;
			const st = m.st;
			const cls = ['hs-st', `hs-st-${st.toLowerCase()}`, `hs-st-${m.kind}`];
			if (this.highlight && this.highlight.states.has(m.ev.seq)) cls.push('hs-hl');
			// A block starts at its report: one the view has not reached is
			// greyed (the initial block leans on the first report).
			// The server's first block is LISTEN: the listening socket's own
			// report (who "listener") is its evidence when there is one.
			let from = m.kind === 'initial' && marks[1] ? marks[1].ev : m.ev;
			if (m.kind === 'initial' && side === 'server' && st === 'LISTEN') {
				const l = src.states.find((x) => x.who === 'listener' && x.to === 'LISTEN' && KERNEL.has(x.source));
				if (l) from = l;
			}
			const future = typeof from.seq === 'number' && from.seq > src.cur;
			if (future) cls.push('hs-future');
			const rect = svg('rect', {
				x: x0, y: m.y, width: TL_W, height: Math.max(2, yEnd - m.y), class: cls.join(' '),
				'data-state': st, 'data-seq': m.ev.seq, 'data-source': m.ev.source, 'data-kind': m.kind,
			});
			// Where it comes from, as a tooltip.
			const tip = svg('title');
			if (m.kind === 'initial') tip.textContent = st;
			else if (m.kind === 'transition') tip.textContent = t('hs.state_tip', { from: m.ev.from, to: st, source: m.ev.source, ms: fmtMs(m.ev.t_kernel_us) });
			else if (m.kind === 'sample') tip.textContent = t('hs.seen_tip', { state: st, source: m.ev.source, ms: fmtMs(m.ev.t_kernel_us) });
			else tip.textContent = t('hs.gone_tip', { last: m.ev.last_state, ms: fmtMs(m.ev.t_kernel_us), reason: this.goneReason(m.ev) });
			rect.appendChild(tip);
			g.appendChild(rect);
			const timed = m.kind === 'sample' && (st === 'TIME_WAIT' || m.ev.timer === 'time_wait');
			let base = st;
			if (m.kind === 'sample') base = t('hs.seen_label', { state: st });
			if (m.kind === 'gone') base = t('hs.gone_label');
			const label = timed && !stopped ? `${base} ${this.countdown(side)}`.trim() : base;
			// Compact: the label wrapped to the column, drawn when its block
			// is tall enough for its lines (the tooltip says it anyway); a
			// countdown has a line of its own (the tick rewrites it).
			if (compact) {
				const lines = wrap(base, TL_W - 6, 10.5, true);
				const tw = timed && !stopped;
				const n = lines.length + (tw ? 1 : 0);
				if (yEnd - m.y >= n * TLINE + 1 || i + 1 === marks.length) {
					const el = svgLines(x0 + 4, m.y + 11, lines, `hs-st-label${future ? ' hs-future' : ''}`, 'start', TLINE);
					el.dataset.state = st;
					el.dataset.label = base;
					g.appendChild(el);
					if (tw) {
						const cd = svgText(x0 + 4, m.y + 11 + lines.length * TLINE, this.countdown(side), `hs-st-label hs-tw${future ? ' hs-future' : ''}`);
						cd.dataset.state = st;
						cd.dataset.label = '';
						g.appendChild(cd);
					}
					if (m.kind === 'gone') g.appendChild(svgLines(x0 + 4, m.y + 11 + n * TLINE, wrap(this.goneReason(m.ev), TL_W - 6, 9.5), 'hs-st-why', 'start', TLINE));
				}
			} else if (yEnd - m.y >= 12 || i + 1 === marks.length) {
				const el = svgText(x0 + 4, m.y + 11, label, `hs-st-label${timed && !stopped ? ' hs-tw' : ''}${future ? ' hs-future' : ''}`);
				el.dataset.state = st;
				el.dataset.label = base;
				g.appendChild(el);
				if (m.kind === 'gone') g.appendChild(svgText(x0 + 4, m.y + 23, this.goneReason(m.ev), 'hs-st-why'));
			}
		}
		// The RFC 9293 model: a tick at the causing segment.
		const rx = side === 'client' ? x0 + TL_W + 4 : x0 - 4;
		for (const s of model) {
			const y = segY.get(s.seg) ?? this.yAt(items, s.t_kernel_us);
			g.appendChild(svg('circle', { cx: rx, cy: y, r: 3, class: 'hs-rfc-dot', 'data-to': s.to }));
		}
		// Disagreements flagged where the kernel's report sits.
		const cmp = this.compare[side];
		if (cmp && Array.isArray(cmp.rows)) {
			for (const row of cmp.rows) {
				if (['same', 'consistent', 'unobserved'].includes(row.match)) continue;
				const ref = row.kernel || row.observed || row.inferred;
				const y = row.inferred && !row.kernel ? (segY.get(row.inferred.seg) ?? this.yAt(items, ref.t_kernel_us))
					: this.yAt(items, ref.t_kernel_us);
				g.appendChild(svgText(side === 'client' ? x0 + TL_W + 12 : x0 - 12, y + 4, '⚠', 'hs-diff-mark', 'middle'));
			}
		}
		root.appendChild(g);
	}

	// Why sock_diag no longer lists a socket, with the segment that shows it.
	goneReason(o) {
		if (o.reason === 'rst' && o.evidence) return t('hs.gone.rst', { n: o.evidence_seg ?? '?', seq: o.evidence.seq_raw });
		return t(`hs.gone.${o.reason || 'not_listed'}`);
	}

	// The kernel's timer: counted down between its readings while the run is
	// live, frozen at its last reading once the run has ended, and gone (no
	// number at all) once the socket is.
	countdown(side) {
		const tm = this.timer[side];
		if (!tm) {
			const tw = this.observations.filter((o) => o.who === side && o.timer === 'time_wait' && typeof o.timer_ms === 'number').pop();
			return tw ? `${(tw.timer_ms / 1000).toFixed(0)} s` : '';
		}
		if (tm.stopped) return '';
		const left = tm.live ? Math.max(0, tm.ms - (performance.now() - tm.at)) : tm.ms;
		return `${(left / 1000).toFixed(tm.live ? 0 : 1)} s`;
	}

	// A live TIME_WAIT counts down once a second from the kernel's last value.
	scheduleTick() {
		const live = Object.values(this.timer).some((tm) => tm.live);
		if (live && !this.tick) {
			this.tick = setInterval(() => {
				for (const el of this.ladderBox.querySelectorAll('.hs-tw')) {
					const side = el.closest('[data-who]')?.dataset.who;
					if (side) el.textContent = `${el.dataset.label} ${this.countdown(side)}`.trim();
				}
				if (!Object.values(this.timer).some((tm) => tm.live)) {
					clearInterval(this.tick);
					this.tick = null;
				}
			}, 1000);
		}
	}

	// ---- selection ----

	// One packet selected everywhere: its arrow, its list row and the
	// detail pane; the pane is scrolled into view when it is off screen.
	select(n) {
		this.selected = n;
		this.highlight = null;
		this.render();
		this.showDetail((this.src ? this.src.segs : this.segs).find((s) => s.n === n));
		const pane = this.detailEl.closest('.hs-packet-view');
		if (pane) {
			const r = pane.getBoundingClientRect();
			if (r.top > window.innerHeight - 120 || r.bottom < 80) pane.scrollIntoView({ block: 'start', behavior: 'smooth' });
		}
		const row = this.listBody.querySelector(`tr[data-n="${n}"]`);
		if (row) row.scrollIntoView({ block: 'nearest' });
	}

	// Clicking a call marks the segments the kernel sent or received while
	// the program was inside it, and the state changes it went through.
	highlightCall(c) {
		const from = c.t_call_us ?? c.t_us;
		const to = callReturnUs(c);
		const inside = (us) => typeof us === 'number' && us >= from && us <= to;
		const segs = new Set(this.segs.filter((s) => inside(s.t_kernel_us)
			|| inside(this.arrivals.get(s.n)?.t)).map((s) => s.n));
		const states = new Set(this.states.filter((s) => s.who === c.who && KERNEL.has(s.source)
			&& s.t_kernel_us >= from && s.t_kernel_us <= to).map((s) => s.seq));
		this.highlight = { segs, calls: new Set([c.seq]), states };
		this.render();
		const names = [...segs].map((n) => {
			const s = this.segs.find((x) => x.n === n);
			return `#${n} [${(s.flags || []).join(',')}]`;
		});
		const st = this.states.filter((s) => states.has(s.seq)).map((s) => `${s.from} → ${s.to}`);
		replace(this.detailEl,
			h('p', { class: 'hs-call-detail', text: t('hs.call_detail', { call: `${c.call}()`, who: c.who, ms: fmtMs(to - from) }) }),
			h('p', { text: segs.size ? t('hs.call_segments', { list: names.join(', ') }) : t('hs.call_no_segments') }),
			st.length ? h('p', { text: t('hs.call_states', { list: st.join(', ') }) }) : null);
	}

	// ---- packet list and detail ----

	renderList() {
		const src = this.src || { segs: this.segs, cur: Infinity };
		const rows = src.segs.map((s) => {
			const future = s.seq > src.cur;
			const tr = h('tr', {
				class: `hs-row-${rowKind(s)} ${s.dir === 'c2s' ? 'hs-row-c2s' : 'hs-row-s2c'}${this.selected === s.n ? ' hs-selected' : ''}${future ? ' hs-future' : ''}`,
				dataset: { n: String(s.n), seq: String(s.seq) }, attrs: { tabindex: 0, 'aria-selected': this.selected === s.n ? 'true' : null },
				on: { click: () => this.select(s.n), keydown: (e) => { if (e.key === 'Enter') this.select(s.n); } },
			},
			h('td', { text: String(s.n) }),
			h('td', { text: fmtMs(s.t_kernel_us) }),
			h('td', { class: 'hs-dir', text: s.dir === 'c2s' ? t('hs.c2s') : t('hs.s2c') }),
			h('td', { text: String(s.wirelen ?? s.caplen ?? '') }),
			h('td', { class: 'hs-info', text: infoText(s, this.absolute, this.rawWin) }));
			return tr;
		});
		replace(this.listBody, rows);
	}

	// The packet shown in the detail pane, drawn again (a toggle changed).
	refreshDetail() {
		if (this.selected === null) return;
		const s = (this.src ? this.src.segs : this.segs).find((x) => x.n === this.selected);
		if (s) this.showDetail(s);
	}

	// Why a segment took as long as it did between its two captures: the
	// relay's own record of the frame (its deliberate delay), and the rest.
	wireWhy(s, a) {
		const w = this.wireOf(s);
		if (!w || typeof w.delay_us !== 'number') return t('hs.wire_why_plain', { ms: fmtMs(a.wire_us) });
		return t('hs.wire_why', {
			ms: fmtMs(a.wire_us), frame: w.frame, delay: fmtMs(w.delay_us), rest: fmtMs(Math.max(0, a.wire_us - w.delay_us)),
		});
	}

	// The relay's record of the frame that carried segment s: same
	// direction, and its one-line summary names the same flags, seq, ack and
	// length (the first such record not taken by an earlier segment).
	wireOf(s) {
		if (!this.wireMatch || this.wireMatch.count !== this.wires.length + this.segs.length) {
			const map = new Map();
			const used = new Set();
			for (const seg of this.segs) {
				const want = `[${seg.flags_short}] seq ${seg.seq_raw} ack ${seg.ack_raw} `;
				const w = this.wires.find((x, i) => !used.has(i) && x.dir === seg.dir && x.proto === 'TCP'
					&& typeof x.summary === 'string' && x.summary.includes(want) && x.summary.endsWith(` len ${seg.len}`)
					&& (used.add(i) || true));
				if (w) map.set(seg.n, w);
			}
			this.wireMatch = { count: this.wires.length + this.segs.length, map };
		}
		return this.wireMatch.map.get(s.n);
	}

	// The window field explained: the raw field, the scale the sender
	// announced in its SYN (which segment), and the bytes it means.
	windowWhy(s) {
		if (typeof s.win_bytes !== 'number' || s.win_bytes === s.win) return null;
		const syn = this.segs.find((x) => x.dir === s.dir && Array.isArray(x.flags) && x.flags.includes('SYN'));
		const ws = syn && (syn.options || []).find((o) => o.name === 'wscale');
		if (!ws || typeof ws.value !== 'number') return t('hs.win_scaled_plain', { raw: s.win, bytes: s.win_bytes });
		return t('hs.win_scaled', { raw: s.win, shift: ws.value, mul: 2 ** ws.value, bytes: s.win_bytes, n: syn.n });
	}

	showDetail(s) {
		if (!s) return;
		const bytes = hexToBytes(s.bytes || '');
		const hex = h('div', { class: 'hs-hex', attrs: { role: 'group', 'aria-label': t('hs.bytes') } });
		const cells = [];
		const chars = [];
		for (let off = 0; off < bytes.length; off += 16) {
			const hexPart = h('span', { class: 'hs-hex-bytes' });
			const ascii = h('span', { class: 'hs-ascii' });
			for (let i = off; i < off + 16; i++) {
				if (i === off + 8) hexPart.appendChild(h('span', { class: 'hs-hex-gap' }));
				if (i >= bytes.length) {
					hexPart.appendChild(h('span', { class: 'hs-byte hs-byte-pad', text: '  ' }));
					continue;
				}
				const b = h('span', { class: 'hs-byte', dataset: { off: String(i) }, text: bytes[i].toString(16).padStart(2, '0') });
				const c = h('span', { class: 'hs-char', dataset: { off: String(i) }, text: bytes[i] >= 0x20 && bytes[i] < 0x7f ? String.fromCharCode(bytes[i]) : '.' });
				cells[i] = b;
				chars[i] = c;
				hexPart.appendChild(b);
				ascii.appendChild(c);
			}
			hex.appendChild(h('div', { class: 'hs-hex-line' },
				h('span', { class: 'hs-hex-off', text: off.toString(16).padStart(4, '0') }), hexPart, ascii));
		}
		// Every field with bytes, innermost last, to find a byte's field.
		const flat = [];
		const buttons = new Map();
		const mark = (f) => {
			for (const b of hex.querySelectorAll('.hs-on')) b.classList.remove('hs-on');
			for (const el of tree.querySelectorAll('.hs-field.hs-on')) el.classList.remove('hs-on');
			if (!f || typeof f.off !== 'number') return;
			for (let i = f.off; i < f.off + (f.len || 0) && i < cells.length; i++) {
				if (cells[i]) cells[i].classList.add('hs-on');
				if (chars[i]) chars[i].classList.add('hs-on');
			}
			const btn = buttons.get(f);
			if (btn) btn.classList.add('hs-on');
		};
		const fieldEl = (f, layer) => {
			if (typeof f.off === 'number' && f.len > 0) flat.push(f);
			const why = layer === 'tcp' && f.name === 'window' ? this.windowWhy(s) : null;
			const val = fmtField(f, layer);
			const text = val === '' ? f.name : `${f.name}: ${val}`;
			const line = h('button', {
				class: `hs-field${f.status && f.status !== 'ok' ? ' hs-field-bad' : ''}`,
				attrs: { type: 'button', title: byteRange('hs.field_bytes', f.off, f.len) },
				dataset: { off: String(f.off), len: String(f.len), name: f.name },
				text: f.why ? `${text} — ${f.why}` : text,
			});
			buttons.set(f, line);
			line.addEventListener('click', () => mark(f));
			if (Array.isArray(f.children) && f.children.length) {
				return h('li', {}, line, h('ul', {}, f.children.map((c) => fieldEl(c, layer))));
			}
			return h('li', {}, line, why ? h('p', { class: 'hs-field-why', text: why }) : null, checksumVerdict(f.check));
		};
		const tree = h('div', { class: 'hs-tree' }, (s.layers || []).map((l) => h('details', { class: `hs-layer hs-layer-${l.layer}`, attrs: { open: true } },
			h('summary', {}, h('span', { class: 'hs-layer-name', text: l.layer }),
				h('span', { class: 'muted hs-layer-bytes', text: ` ${byteRange('hs.layer_bytes', l.off, l.len)}` }),
				l.status !== 'ok' ? h('span', { class: 'hs-field-bad', text: ` ${l.status}: ${l.why || ''}` }) : null),
			h('ul', {}, (l.fields || []).map((f) => fieldEl(f, l.layer))))));
		// A byte clicked: the innermost field that holds it (the last one
		// listed whose range covers it).
		hex.addEventListener('click', (e) => {
			const el = e.target.closest('[data-off]');
			if (!el) return;
			const i = Number(el.dataset.off);
			let best = null;
			for (const f of flat) if (i >= f.off && i < f.off + f.len && (!best || f.len <= best.len)) best = f;
			mark(best);
			if (best && buttons.get(best)) buttons.get(best).scrollIntoView({ block: 'nearest' });
		});
		const addr = `${fmtAddr(s.src)} → ${fmtAddr(s.dst)}`;
		const a = (this.src ? this.src.arrivals : this.arrivals).get(s.n);
		const arrived = a && (!this.src || a.seq <= this.src.cur);
		replace(this.detailEl,
			h('p', { class: 'hs-detail-head' }, h('strong', { text: `#${s.n}` }), ` ${addr} · ${segmentLabel(s, this.absolute, this.rawWin)}`),
			arrived ? h('p', { class: 'help hs-wire-why', text: this.wireWhy(s, a) }) : null,
			s.status !== 'ok' ? h('p', { class: 'callout callout-warn', text: `${s.status}: ${s.why || ''}` }) : null,
			Object.values(s.checksums || {}).some((k) => k && k.status === 'bad') ? h('p', { class: 'callout callout-warn', text: t('hs.csum_bad') }) : null,
			h('div', { class: 'hs-detail-panes' },
				tree,
				h('div', { class: 'hs-bytes-pane' },
					h('h4', { text: t('hs.bytes') }),
					hex,
					s.bytes_truncated ? h('p', { class: 'muted', text: t('hs.bytes_truncated') }) : null)));
	}

	// ---- comparison ----

	renderCompare() {
		const cards = [];
		for (const side of SIDES) {
			const c = this.compare[side];
			if (!c) continue;
			const kernelText = (r) => {
				if (r.kernel) return `${r.kernel.from} → ${r.kernel.to}`;
				if (r.observed) return r.observed.listed === false ? `${t('hs.gone_label')} (${this.goneReason(r.observed)})` : t('hs.seen_label', { state: r.observed.state });
				return '—';
			};
			const rows = (c.rows || []).map((r) => h('tr', { class: `hs-match-${r.match}${r.observed ? ' hs-row-sample' : ''}` },
				h('td', { text: kernelText(r) }),
				h('td', { class: 'muted', text: r.kernel ? r.kernel.source : r.observed ? r.observed.source : '' }),
				h('td', { text: r.inferred ? `${r.inferred.from} → ${r.inferred.to}` : r.observed ? t('hs.model_at', { state: r.model_state }) : '—' }),
				h('td', { text: r.inferred ? `#${r.inferred.seg}` : '' }),
				h('td', { class: 'hs-match', text: t(`hs.match.${r.match}`) })));
			cards.push(h('div', { class: 'hs-compare-side', dataset: { who: side } },
				h('h4', {}, t(`hs.${side}`), ' ', h('span', { class: `pill ${c.agree ? 'pill-ok' : 'pill-timeout'}`, text: c.agree ? t('hs.agree') : t('hs.differ', { n: c.differences }) })),
				h('table', { class: 'hs-compare-table' },
					h('thead', {}, h('tr', {}, [t('hs.kernel'), t('hs.source'), t('hs.rfc'), t('hs.cause'), '']
						.map((x) => h('th', { text: x })))),
					h('tbody', {}, rows))));
		}
		if (cards.length) replace(this.compareEl, cards);
		else replace(this.compareEl, h('p', { class: 'muted', text: t(this.ended ? 'hs.compare_none' : 'hs.compare_wait') }));
	}
}

// An arrow crosses the labels of the segments in flight beside it (two
// hosts: several are on the wire at once): each label gets a box of the
// background colour under it, measured once the SVG is in the page.
function labelBackgrounds(root) {
	if (!root.isConnected) return;
	root.dataset.labelled = '1';
	for (const old of root.querySelectorAll('.hs-label-bg')) old.remove();
	for (const el of root.querySelectorAll('.hs-seg-label, .hs-seg-time, .hs-compact .hs-call-label')) {
		// A wrapped label (compact) has a box per line, not one around all.
		const parts = el.querySelector('tspan') ? [...el.querySelectorAll('tspan')] : [el];
		for (const part of parts) {
			let b;
			try {
				b = part.getBBox();
			} catch {
				continue;
			}
			if (!b.width) continue;
			el.before(svg('rect', { x: b.x - 3, y: b.y, width: b.width + 6, height: b.height, rx: 3, class: 'hs-label-bg' }));
		}
	}
}

// Presenter mode sets the labels in another size: measured again.
document.addEventListener('socklab:presenter', () => {
	for (const root of document.querySelectorAll('svg.hs-ladder')) labelBackgrounds(root);
});

function hexToBytes(hex) {
	const out = [];
	for (let i = 0; i + 1 < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
	return out;
}

// "bytes 34–53 (20 bytes)": the first and last byte of a range.
function byteRange(key, off, len) {
	if (typeof off !== 'number' || typeof len !== 'number') return '';
	return t(key, { from: off, to: off + Math.max(0, len - 1), len });
}

// A field's value as a person reads it: an EtherType in hex, an option's
// value as the decoder's words (TSval/TSecr, shift and multiplier), a
// number with the decoder's note beside it.
function fmtField(f, layer) {
	const v = f.value;
	if (layer === 'ethernet' && f.name === 'type' && typeof v === 'number') {
		const hx = `0x${v.toString(16).padStart(4, '0')}`;
		return f.text ? `${hx} (${f.text})` : hx;
	}
	if (v !== null && typeof v === 'object') return f.text !== undefined ? String(f.text) : JSON.stringify(v);
	const base = v === null || v === undefined ? '' : String(v);
	if (f.text === undefined) return base;
	return base === '' ? String(f.text) : `${base} (${f.text})`;
}

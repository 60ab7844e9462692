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
import { RunFrame, errorCallout, noteCallout } from './common.js';
import { rawBlock } from './raw.js';
import { wireCell } from './net.js';
import { checksumVerdict } from './checksum.js';

const SVG = 'http://www.w3.org/2000/svg';
const SIDES = ['client', 'server'];
const KERNEL = new Set(['tracepoint', 'sock_diag', 'tcp_info']);
const MODEL = 'rfc-model';
const WIDTH = 860;
const X = { tlClient: 8, callClient: 236, client: 250, server: 610, callServer: 624, tlServer: 742 };
const TL_W = 110;
const SEG_H = 40;
const CALL_H = 22;
const ARR_H = 16;
const TOP = 34;

// Stylesheet of this view, loaded once (no inline styles: strict CSP).
function ensureStyles() {
	if (document.querySelector('link[data-view="handshake"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/handshake.css', 'data-view': 'handshake' } }));
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

// The form offers a recorded capture to replay (uploaded; the server saves
// it and sets the server-assigned replay parameter).
export const formHints = { upload: { param: 'replay', maxBytes: 47 * 1024, accept: '.pcap,.pcapng,.cap' } };

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new HandshakeView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

// The segment's label on its arrow: flags, seq/ack (relative or absolute), len, win.
export function segmentLabel(s, absolute) {
	const seq = absolute ? s.seq_raw : s.rel_seq;
	const ack = absolute ? s.ack_raw : s.rel_ack;
	const parts = [`[${(s.flags || []).join(', ') || t('hs.no_flags')}]`, `seq ${seq ?? '?'}`];
	if (Array.isArray(s.flags) && s.flags.includes('ACK')) parts.push(`ack ${ack ?? '?'}`);
	parts.push(`len ${s.len ?? 0}`, `win ${s.win ?? '?'}`);
	return parts.join(' ');
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
		this.selected = null;
		this.highlight = null; // {segs: Set, calls: Set, states: Set}
		this.ended = false;
		this.tick = null;

		this.absBox = h('input', { attrs: { type: 'checkbox', id: 'hs-absolute' } });
		this.absBox.addEventListener('change', () => {
			this.absolute = this.absBox.checked;
			this.render();
		});
		this.pcapEl = h('span', { class: 'hs-pcap' });
		this.captureEl = h('p', { class: 'help hs-capture' });
		this.ladderBox = h('div', { class: 'hs-ladder-box scroll' });
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
				this.pcapEl),
			this.captureEl, this.hintEl, this.legendEl, this.ladderBox));
		root.appendChild(h('div', { class: 'hs-columns' },
			h('section', { class: 'card hs-packets' },
				h('h3', { text: t('hs.packets') }),
				h('div', { class: 'scroll hs-list-scroll' },
					h('table', { class: 'hs-list' },
						h('thead', {}, h('tr', {},
							['#', t('hs.col.time'), t('hs.col.dir'), t('hs.col.flags'), 'seq', 'ack', 'len', 'win']
								.map((c) => h('th', { text: c })))),
						this.listBody))),
			h('section', { class: 'card hs-detail-card' }, h('h3', { text: t('hs.detail') }), this.detailEl)));
		root.appendChild(h('section', { class: 'card hs-compare-card' },
			h('h3', { text: t('hs.compare') }),
			h('p', { class: 'help', text: t('hs.compare_help') }),
			this.compareEl));
		root.appendChild(h('section', { class: 'card hs-notes-card' }, h('h3', { text: t('hs.notes') }), this.notesEl, this.rawEl));
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
	}

	get status() {
		return this.frame.status;
	}

	// ---- layout: rows in the order the kernel stamped things ----

	rows() {
		const items = [];
		for (const s of this.segs) items.push({ kind: 'seg', t: s.t_kernel_us, ev: s });
		// Two hosts: a row where each segment reaches the other host.
		for (const [n, a] of this.arrivals) items.push({ kind: 'arr', t: a.t, n });
		for (const c of this.calls) items.push({ kind: 'call', t: c.t_call_us ?? c.t_us, ev: c });
		const order = { call: 0, arr: 1, seg: 2 };
		items.sort((a, b) => a.t - b.t || order[a.kind] - order[b.kind]);
		let y = TOP;
		for (const it of items) {
			it.y = y;
			y += it.kind === 'seg' ? SEG_H : it.kind === 'arr' ? ARR_H : CALL_H;
		}
		return { items, height: y + 50 };
	}

	// The y where something stamped at time us happened: after the last row
	// at or before it.
	yAt(items, us) {
		let y = TOP - 8;
		for (const it of items) {
			if (it.t <= us) y = it.y + (it.kind === 'seg' ? SEG_H / 2 + 4 : it.kind === 'arr' ? ARR_H / 2 : CALL_H / 2);
			else break;
		}
		return y;
	}

	render() {
		const { items, height } = this.rows();
		const root = svg('svg', {
			class: 'hs-ladder', viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height,
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

		for (const side of SIDES) this.drawTimeline(root, items, side, height);
		const arrY = new Map();
		for (const it of items) if (it.kind === 'arr') arrY.set(it.n, it.y + ARR_H / 2 + 2);
		for (const it of items) {
			if (it.kind === 'seg') this.drawSegment(root, it, arrY);
			else if (it.kind === 'call') this.drawCall(root, items, it);
		}
		replace(this.ladderBox, root);
		this.renderList();
		this.renderCompare();
		this.scheduleTick();
	}

	drawSegment(root, it, arrY) {
		const s = it.ev;
		const c2s = s.dir === 'c2s';
		const x1 = c2s ? X.client : X.server;
		let x2 = c2s ? X.server : X.client;
		const y1 = it.y + 14;
		let y2 = it.y + SEG_H - 6;
		// Over two hosts the arrow ends where the segment arrived; one that has
		// not arrived (yet, or ever: the wire lost it) stops half way.
		const arrived = arrY.get(s.n);
		const lost = this.twoHosts && arrived === undefined;
		if (this.twoHosts && arrived !== undefined) y2 = Math.max(y1 + 8, arrived);
		if (lost) x2 = (x1 + x2) / 2;
		const flags = Array.isArray(s.flags) ? s.flags : [];
		const cls = ['hs-seg', c2s ? 'hs-c2s' : 'hs-s2c'];
		if (flags.includes('SYN')) cls.push('hs-syn');
		if (flags.includes('FIN')) cls.push('hs-fin');
		if (flags.includes('RST')) cls.push('hs-rst');
		if (s.len > 0) cls.push('hs-data');
		if (this.selected === s.n) cls.push('hs-selected');
		if (this.highlight && this.highlight.segs.has(s.n)) cls.push('hs-hl');
		const g = svg('g', { class: cls.join(' '), 'data-n': s.n, tabindex: 0, role: 'button',
			'aria-label': t('hs.segment_label', { n: s.n, label: segmentLabel(s, this.absolute) }) });
		// The whole row answers clicks, not just the thin arrow.
		g.appendChild(svg('rect', { x: X.client, y: it.y, width: X.server - X.client, height: SEG_H, class: 'hs-hit' }));
		if (lost) cls.push('hs-lost');
		g.setAttribute('class', cls.join(' '));
		g.appendChild(svg('line', { x1, y1, x2, y2, class: 'hs-arrow-line', 'marker-end': lost ? null : 'url(#hs-arrow)' }));
		g.appendChild(svgText((X.client + X.server) / 2, it.y + 10, segmentLabel(s, this.absolute), 'hs-seg-label', 'middle'));
		g.appendChild(svgText(c2s ? x1 + 6 : x1 - 6, y1 - 4, `#${s.n}`, 'hs-seg-n', c2s ? 'start' : 'end'));
		const a = this.arrivals.get(s.n);
		const when = a ? t('hs.sent_arrived', { sent: fmtMs(s.t_kernel_us), wire: fmtMs(a.wire_us) }) : `${fmtMs(s.t_kernel_us)} ms`;
		g.appendChild(svgText((X.client + X.server) / 2, Math.min(y2, it.y + SEG_H) + 4, when, 'hs-seg-time', 'middle'));
		if (lost && this.ended) g.appendChild(svgText(x2, y2 + 4, '✗', 'hs-seg-bad', 'middle'));
		if (a && a.copies > 1) g.appendChild(svgText(c2s ? X.server - 6 : X.client + 6, y2 - 4, `×${a.copies}`, 'hs-seg-bad', c2s ? 'end' : 'start'));
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
		const c = it.ev;
		const client = c.who === 'client';
		const yEnd = Math.max(it.y + CALL_H - 6, this.yAt(items, c.t_us));
		const x = client ? X.callClient : X.callServer;
		const failed = c.ret === -1;
		const cls = ['hs-call', client ? 'hs-call-client' : 'hs-call-server'];
		if (failed) cls.push('hs-call-failed');
		if (this.highlight && this.highlight.calls.has(c.seq)) cls.push('hs-hl');
		const g = svg('g', { class: cls.join(' '), 'data-call': c.call, 'data-seq': c.seq, tabindex: 0, role: 'button',
			'aria-label': t('hs.call_label', { call: c.call, who: c.who }) });
		g.appendChild(svg('rect', { x: client ? x - 130 : x, y: it.y, width: 130, height: CALL_H, class: 'hs-hit' }));
		g.appendChild(svg('line', { x1: x, y1: it.y + 4, x2: x, y2: yEnd, class: 'hs-call-bar' }));
		const ret = failed ? ` ${c.errno_name || ''}` : ` = ${c.ret}`;
		g.appendChild(svgText(client ? x - 6 : x + 6, it.y + 14, `${c.call}()${ret}`, 'hs-call-label', client ? 'end' : 'start'));
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
	drawTimeline(root, items, side, height) {
		const x0 = side === 'client' ? X.tlClient : X.tlServer;
		const kernel = this.states.filter((s) => s.who === side && KERNEL.has(s.source));
		const model = this.states.filter((s) => s.who === side && s.source === MODEL);
		const seen = this.observations.filter((o) => o.who === side);
		const segY = new Map();
		for (const it of items) if (it.kind === 'seg') segY.set(it.ev.n, it.y + SEG_H / 2 + 4);
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
			if (yEnd - m.y >= 12 || i + 1 === marks.length) {
				const el = svgText(x0 + 4, m.y + 11, label, `hs-st-label${timed && !stopped ? ' hs-tw' : ''}`);
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

	select(n) {
		this.selected = n;
		this.highlight = null;
		this.render();
		this.showDetail(this.segs.find((s) => s.n === n));
	}

	// Clicking a call marks the segments the kernel sent or received while
	// the program was inside it, and the state changes it went through.
	highlightCall(c) {
		const from = c.t_call_us ?? c.t_us;
		const to = c.t_us;
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
		const rows = this.segs.map((s) => {
			const tr = h('tr', {
				class: `${s.dir === 'c2s' ? 'hs-row-c2s' : 'hs-row-s2c'}${this.selected === s.n ? ' hs-selected' : ''}`,
				dataset: { n: String(s.n) }, attrs: { tabindex: 0 },
				on: { click: () => this.select(s.n), keydown: (e) => { if (e.key === 'Enter') this.select(s.n); } },
			},
			h('td', { text: String(s.n) }),
			h('td', { text: fmtMs(s.t_kernel_us) }),
			h('td', { text: s.dir === 'c2s' ? t('hs.c2s') : t('hs.s2c') }),
			h('td', { class: 'hs-flags', text: (s.flags || []).join(', ') }),
			h('td', { text: String(this.absolute ? s.seq_raw : s.rel_seq ?? '') }),
			h('td', { text: s.flags && s.flags.includes('ACK') ? String(this.absolute ? s.ack_raw : s.rel_ack ?? '') : '' }),
			h('td', { text: String(s.len ?? '') }),
			h('td', { text: String(s.win ?? '') }));
			return tr;
		});
		replace(this.listBody, rows);
	}

	showDetail(s) {
		if (!s) return;
		const bytes = hexToBytes(s.bytes || '');
		const hex = h('div', { class: 'hs-hex', attrs: { role: 'group', 'aria-label': t('hs.bytes') } });
		const cells = [];
		for (let off = 0; off < bytes.length; off += 16) {
			const line = h('div', { class: 'hs-hex-line' }, h('span', { class: 'hs-hex-off', text: off.toString(16).padStart(4, '0') }));
			for (let i = off; i < Math.min(off + 16, bytes.length); i++) {
				const b = h('span', { class: 'hs-byte', dataset: { off: String(i) }, text: bytes[i].toString(16).padStart(2, '0') });
				cells[i] = b;
				line.appendChild(b);
			}
			hex.appendChild(line);
		}
		const mark = (f) => {
			for (const b of hex.querySelectorAll('.hs-byte.hs-on')) b.classList.remove('hs-on');
			for (const el of tree.querySelectorAll('.hs-field.hs-on')) el.classList.remove('hs-on');
			if (!f || typeof f.off !== 'number') return;
			for (let i = f.off; i < f.off + (f.len || 0) && i < cells.length; i++) cells[i].classList.add('hs-on');
		};
		const fieldEl = (f) => {
			const text = `${f.name}: ${fmtField(f)}${f.text !== undefined ? ` (${f.text})` : ''}`;
			const line = h('button', {
				class: `hs-field${f.status && f.status !== 'ok' ? ' hs-field-bad' : ''}`,
				attrs: { type: 'button', title: t('hs.field_bytes', { off: f.off, len: f.len }) },
				dataset: { off: String(f.off), len: String(f.len), name: f.name },
				text: f.why ? `${text} — ${f.why}` : text,
			});
			line.addEventListener('click', () => {
				mark(f);
				line.classList.add('hs-on');
			});
			if (Array.isArray(f.children) && f.children.length) {
				return h('li', {}, line, h('ul', {}, f.children.map(fieldEl)));
			}
			return h('li', {}, line, checksumVerdict(f.check));
		};
		const tree = h('div', { class: 'hs-tree' }, (s.layers || []).map((l) => h('details', { class: `hs-layer hs-layer-${l.layer}`, attrs: { open: true } },
			h('summary', {}, h('span', { class: 'hs-layer-name', text: l.layer }),
				h('span', { class: 'muted', text: ` ${t('hs.layer_bytes', { off: l.off, len: l.len })}` }),
				l.status !== 'ok' ? h('span', { class: 'hs-field-bad', text: ` ${l.status}: ${l.why || ''}` }) : null),
			h('ul', {}, (l.fields || []).map(fieldEl)))));
		const addr = `${fmtAddr(s.src)} → ${fmtAddr(s.dst)}`;
		replace(this.detailEl,
			h('p', { class: 'hs-detail-head' }, h('strong', { text: `#${s.n}` }), ` ${addr} · ${segmentLabel(s, this.absolute)}`),
			s.status !== 'ok' ? h('p', { class: 'callout callout-warn', text: `${s.status}: ${s.why || ''}` }) : null,
			Object.values(s.checksums || {}).some((k) => k && k.status === 'bad') ? h('p', { class: 'callout callout-warn', text: t('hs.csum_bad') }) : null,
			tree,
			h('h4', { text: t('hs.bytes') }),
			hex,
			s.bytes_truncated ? h('p', { class: 'muted', text: t('hs.bytes_truncated') }) : null);
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
		else if (!this.compareEl.firstChild) this.compareEl.appendChild(h('p', { class: 'muted', text: t('hs.compare_wait') }));
	}
}

function hexToBytes(hex) {
	const out = [];
	for (let i = 0; i + 1 < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
	return out;
}

function fmtField(f) {
	const v = f.value;
	if (v === null || v === undefined) return '';
	if (typeof v === 'object') return JSON.stringify(v);
	return String(v);
}


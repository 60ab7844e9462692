// sticky.js: the view of the sticky lab: send() calls, segments on the wire and recv() returns as three lanes on one time axis, one colour per message.
//
// Every lane event ("send", "segment", "recv") names the application
// messages its bytes belong to (msgs: [{msg, from, to, whole}]), so a bar is
// drawn as one coloured part per message: a bar with several colours glued
// messages together (粘包), a colour spread over several bars was split
// (拆包). Bars sit at their time on one axis shared by the three lanes
// (t_call_us for calls, t_wire_us for segments). Colours and positions are
// CSS classes and CSSOM properties, never style attributes (strict CSP).
// Framed runs add the header bytes in hex next to the values they encode.
//
// The receiver's ACKs ("segment" events with dir "s2c") have their own lane,
// and the lab's evidence is drawn on the bars: every segment a "hold" event
// names as held is outlined, and for the segment a cause note explains, the
// unacknowledged small segment (Nagle) and the ACK that released it are
// marked too, with the TCP_INFO sample beside them in the evidence card.

import { h, replace, fmtMs } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout } from './common.js';
import { rawBlock } from './raw.js';

const COLOURS = 12;
const LANES = ['send', 'segment', 'ack', 'recv'];
const MAX_BARS = 2000;

// The speed an animation plays at when the bar has none: the smallest of the
// bar's speeds (events a second) that shows the whole run in about 10 s.
function speedFor(total) {
	for (const s of [2, 5, 10, 20, 50]) if (total / s <= 10) return s;
	return 50;
}

function ensureStyles() {
	if (document.querySelector('link[data-view="sticky"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/sticky.css', 'data-view': 'sticky' } }));
}

// The form shows "Let me connect my own client" as a checkbox setting this.
// With your own client, the lab's client knobs do not apply (the form disables them).
export const formHints = {
	byo: { param: 'mode', value: 'server', clientOnly: ['count', 'size', 'nodelay', 'cork', 'gap_ms'] },
	main: ['mode', 'count', 'size', 'nodelay', 'cork', 'recv_delay_ms'],
};

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new StickyView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

function timeOf(ev) {
	return ev.type === 'segment' ? ev.t_wire_us : ev.t_call_us ?? ev.t_us;
}

function msgText(ms) {
	return (Array.isArray(ms) ? ms : []).map((m) => (m.whole ? `#${m.msg}` : `#${m.msg}[${m.from}..${m.to})`)).join(' ');
}

class StickyView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.udp = false;
		this.ev = { send: [], segment: [], ack: [], recv: [] };
		this.held = new Set();
		this.evidence = null;
		this.messages = [];
		this.lanes = {};
		this.lists = {};
		const laneRows = LANES.map((lane) => {
			const track = h('div', { class: 'stk-track', attrs: { role: 'list' } });
			const title = h('span', { class: 'stk-lane-title' });
			const count = h('span', { class: 'stk-lane-count' });
			const row = h('div', { class: `stk-lane stk-lane-${lane}`, dataset: { lane, count: '0' } },
				h('div', { class: 'stk-lane-head' }, title, count), track);
			this.lanes[lane] = { row, track, title, count };
			return row;
		});
		this.axisEl = h('div', { class: 'stk-axis' });
		// Two views of the same lanes: the byte stream (default) and time.
		this.tab = 'bytes';
		this.tabBtns = {};
		const tabs = h('div', { class: 'stk-tabs', attrs: { role: 'tablist', 'aria-label': t('sticky.tabs') } },
			['bytes', 'time'].map((k) => {
				const b = h('button', { class: `btn btn-small stk-tab${k === 'bytes' ? ' stk-tab-on' : ''}`, attrs: { type: 'button', role: 'tab', 'aria-selected': String(k === 'bytes') }, dataset: { tab: k }, text: t(`sticky.tab.${k}`) });
				b.addEventListener('click', () => this.setTab(k));
				this.tabBtns[k] = b;
				return b;
			}));
		// The animation follows the replay bar: its frame is the bar's
		// position. Started, it plays the run from its first event; the
		// bars appear as the position reaches the events that draw them
		// (seq order), each send's bytes filling in, segments and recvs
		// dropping from the lane above: the same bytes moving from the
		// sender's calls onto the wire and into the receiver's recv().
		// Stepping, the slider and play/pause move it to that event. The
		// choice survives the view being drawn again from the first event.
		this.keep = ctx.keep || {};
		this.animating = !!this.keep.stickyAnimating;
		this.animBtn = h('button', { class: 'btn btn-small stk-animate', attrs: { type: 'button', 'aria-pressed': 'false' }, text: t('sticky.animate') });
		this.animBtn.addEventListener('click', () => this.animate(!this.animating, true));
		tabs.appendChild(this.animBtn);
		this.scrub = h('input', { class: 'stk-scrub', attrs: { type: 'range', min: '0', step: '1', 'aria-label': t('sticky.scrub') } });
		this.scrub.addEventListener('input', () => {
			if (ctx.replay) ctx.replay.seek(Number(this.scrub.value));
		});
		this.scrubBox = h('label', { class: 'stk-scrub-box' }, this.scrub);
		this.scrubBox.hidden = true;
		this.countsEl = h('p', { class: 'stk-counts' });
		this.notesEl = h('div', { class: 'stk-notes' });
		this.evidenceEl = h('div', { class: 'stk-evidence' });
		this.evidenceEl.hidden = true;
		this.framesEl = h('div', { class: 'stk-frames' });
		this.framesCard = h('section', { class: 'card stk-frames-card' }, h('h3', { text: t('sticky.messages') }), this.framesEl);
		this.framesCard.hidden = true;
		this.rawEl = h('div', { class: 'stk-raw' });
		this.byoEl = h('div', { class: 'stk-byo' });
		this.byoCard = h('section', { class: 'card stk-byo-card' }, h('h3', { text: t('sticky.byo.requests') }), this.byoEl);
		this.byoCard.hidden = true;
		const listBox = LANES.map((lane) => {
			const ol = h('ol', { class: `stk-list stk-list-${lane}`, attrs: { start: '0' } });
			this.lists[lane] = ol;
			return h('div', { class: 'stk-list-box' }, h('h4', { class: `stk-list-title-${lane}` }), ol);
		});
		this.listTitles = listBox.map((b) => b.firstChild);
		this.card = h('section', { class: 'card stk-card', dataset: { animating: '0' } },
			h('h3', { text: t('lab.sticky.title') }),
			h('p', { class: 'help', text: t('sticky.legend') }),
			h('div', { class: 'stk-lanes-head' }, this.countsEl, tabs),
			this.scrubBox,
			h('div', { class: 'stk-lanes' }, laneRows, this.axisEl),
			this.evidenceEl,
			this.notesEl);
		root.appendChild(this.card);
		root.appendChild(this.framesCard);
		root.appendChild(this.byoCard);
		root.appendChild(h('section', { class: 'card stk-lists-card' }, h('div', { class: 'stk-lists' }, listBox), this.rawEl));
		this.titles();
		if (this.animating) this.animate(true, false);
	}

	titles() {
		const sfx = this.udp ? '_udp' : '';
		const keys = { send: `sticky.lane.send${sfx}`, segment: `sticky.lane.wire${sfx}`, ack: 'sticky.lane.ack', recv: `sticky.lane.recv${sfx}` };
		LANES.forEach((lane, i) => {
			this.lanes[lane].title.textContent = t(keys[lane]);
			this.listTitles[i].textContent = t(keys[lane]);
		});
		// UDP has no ACKs: its lane and list are hidden.
		this.lanes.ack.row.hidden = this.udp;
		this.listTitles[LANES.indexOf('ack')].parentNode.hidden = this.udp;
	}

	push(events) {
		let changed = false;
		for (const ev of events) {
			if (this.frame.take(ev)) {
				if (ev.type === 'run.start') {
					this.udp = !!(ev.params && ev.params.mode === 'udp');
					this.titles();
				}
				continue;
			}
			switch (ev.type) {
			case 'send':
			case 'segment':
			case 'recv': {
				const lane = ev.type === 'segment' && ev.dir === 's2c' ? 'ack' : ev.type;
				if (this.ev[lane].length < MAX_BARS) this.ev[lane].push(ev);
				changed = true;
				break;
			}
			case 'hold':
				this.held.add(ev.seg);
				changed = true;
				break;
			case 'message':
				this.framesCard.hidden = false;
				this.framesEl.appendChild(this.frameRow(ev));
				break;
			case 'frame_error':
				this.framesCard.hidden = false;
				this.framesEl.appendChild(h('div', { class: 'callout callout-error stk-frame-error' },
					h('p', { text: t('sticky.frame_error', { at: ev.at, message: ev.message || '' }) }),
					h('p', { class: 'stk-hex-line' }, h('code', { class: 'stk-hex', text: ev.header_hex || '' }), ' ',
						t('sticky.header_value', { format: ev.format || '', value: ev.value }))));
				break;
			case 'request':
				// mode=server: every recv() boundary of the client's requests.
				this.byoCard.hidden = false;
				this.byoEl.appendChild(h('div', { class: `stk-req${ev.glued ? ' stk-glued' : ''}`, dataset: { conn: String(ev.conn), recv: String(ev.recv) } },
					h('span', { class: 'stk-frame-idx', text: `${ev.conn}/${ev.recv}` }),
					h('span', { text: t('sticky.bytes', { bytes: ev.bytes }) }),
					(Array.isArray(ev.requests) ? ev.requests : []).map((r, i) => h('code', { class: `stk-chip stk-m${i % COLOURS}`, text: String(r.text ?? '') }))));
				break;
			case 'reply':
				this.byoCard.hidden = false;
				this.byoEl.appendChild(h('div', { class: 'stk-frame stk-reply', dataset: { request: String(ev.request) } },
					h('span', { class: 'stk-frame-idx', text: `→ ${ev.request}` }),
					h('code', { class: 'stk-hex', text: ev.header_hex || '' }),
					h('span', { text: t('sticky.header_value', { format: ev.format || '', value: ev.header_len }) }),
					h('code', { class: 'stk-json', text: ev.header || '' })));
				break;
			case 'note':
				this.notesEl.appendChild(noteCallout(ev));
				if (!this.evidence && /^sticky\.cause\./.test(ev.key || '') && ev.params && Number.isInteger(ev.params.seg)) {
					this.evidence = ev.params;
					this.showEvidence();
					changed = true;
				}
				break;
			case 'error':
				this.notesEl.appendChild(errorCallout(ev));
				break;
			case 'syscall':
			case 'capture':
			case 'wire':
				break; // the lanes say what the calls did
			default:
				this.rawEl.appendChild(rawBlock(ev));
			}
		}
		// Stepping moves what is current even when no lane event came.
		if (changed || (events.length && this.ctx.allEvents)) this.render();
		this.frame.flush();
	}

	frameRow(ev) {
		return h('div', { class: `stk-frame stk-m${((ev.msg % COLOURS) + COLOURS) % COLOURS}`, dataset: { msg: String(ev.msg) } },
			h('span', { class: 'stk-frame-idx', text: `#${ev.msg}` }),
			h('code', { class: 'stk-hex', text: ev.header_hex || '' }),
			h('span', { text: t('sticky.header_value', { format: ev.format || '', value: ev.header_len }) }),
			h('code', { class: 'stk-json', text: ev.header || '' }),
			h('span', { text: t('sticky.bytes', { bytes: ev.total_size }) }));
	}

	// The evidence card: the cause of the first merged segment, the TCP_INFO
	// sample it rests on, and a key to the marks drawn on the lanes.
	showEvidence() {
		const p = this.evidence;
		const marks = [h('span', { class: 'stk-key stk-ev-held', text: t('sticky.evidence.held', { seg: p.seg }) })];
		if (Number.isInteger(p.small_seg)) marks.push(h('span', { class: 'stk-key stk-ev-small', text: t('sticky.evidence.small', { seg: p.small_seg }) }));
		if (Number.isInteger(p.ack_seg)) marks.push(h('span', { class: 'stk-key stk-ev-release', text: t('sticky.evidence.release', { seg: p.ack_seg }) }));
		if (Number.isInteger(p.rel_send)) marks.push(h('span', { class: 'stk-key stk-ev-release', text: t('sticky.evidence.release_send', { send: p.rel_send }) }));
		replace(this.evidenceEl,
			h('h4', {}, t('sticky.evidence.title'), ': ', h('strong', { class: 'stk-cause', dataset: { cause: String(p.cause || '') }, text: t(`sticky.cause.${p.cause}`) })),
			h('p', { class: 'stk-tcpinfo', text: t('sticky.evidence.tcp_info', p) }),
			h('p', { class: 'stk-keys' }, marks));
		this.evidenceEl.hidden = false;
	}

	marks(ev) {
		const out = [];
		const p = this.evidence;
		if (ev.dir === 's2c') {
			if (p && ev.i === p.ack_seg) out.push('stk-ev-release');
			if (p && ev.i === p.then_seg) out.push('stk-ev-then');
			return out;
		}
		if (ev.type === 'send' && p && ev.i === p.rel_send) out.push('stk-ev-release');
		if (ev.type !== 'segment') return out;
		if (this.held.has(ev.i)) out.push('stk-held');
		if (p && ev.i === p.seg) out.push('stk-ev-held');
		if (p && ev.i === p.small_seg) out.push('stk-ev-small');
		return out;
	}

	bar(ev) {
		const parts = (Array.isArray(ev.msgs) ? ev.msgs : []).map((m) => {
			const p = h('span', { class: `stk-part stk-m${m.msg % COLOURS}`, dataset: { msg: String(m.msg) } });
			p.style.flexGrow = String(Math.max(1, m.to - m.from));
			p.style.flexBasis = '0';
			return p;
		});
		const cls = ['stk-bar'];
		if (!parts.length) cls.push('stk-ctl');
		if (ev.retransmit) cls.push('stk-retrans');
		if (parts.length > 1) cls.push('stk-glued');
		if (ev.dir === 's2c') cls.push('stk-ackbar');
		cls.push(...this.marks(ev));
		const tip = [`${ev.type} ${ev.i}`, fmtMs(timeOf(ev)), t('sticky.bytes', { bytes: ev.bytes })];
		if (ev.flags) tip.push(ev.flags);
		if (ev.dir === 's2c') tip.push(`ack ${ev.ack}`, `win ${ev.win}`);
		if (parts.length) tip.push(msgText(ev.msgs));
		if (typeof ev.offset === 'number' && ev.dir !== 's2c') tip.push(t('sticky.range', { from: ev.offset, to: ev.offset + (ev.bytes || 0) }));
		return h('span', { class: cls.join(' '), attrs: { role: 'listitem', title: tip.join(' · ') }, dataset: { i: String(ev.i), seq: String(ev.seq), lane: ev.type === 'segment' && ev.dir === 's2c' ? 'ack' : ev.type } },
			parts.length ? parts : h('span', { class: 'stk-flag', text: ev.flags || '' }));
	}

	// The lane events to draw: every one the player holds (so the ruler's
	// scale and every bar's place stay put while the run is stepped), each
	// marked future when the view has not reached it yet.
	laneEvents() {
		const all = this.ctx.allEvents ? this.ctx.allEvents() : null;
		if (!all) return { ev: this.ev, cur: Infinity };
		const ev = { send: [], segment: [], ack: [], recv: [] };
		for (const e of all) {
			if (e.type !== 'send' && e.type !== 'segment' && e.type !== 'recv') continue;
			const lane = e.type === 'segment' && e.dir === 's2c' ? 'ack' : e.type;
			if (ev[lane].length < MAX_BARS) ev[lane].push(e);
		}
		return { ev, cur: this.frame.lastSeq };
	}

	// Start (on) or stop the animation of the lanes. Started by the reader
	// (user), it plays the run from its first event at the bar's speed (or
	// one that shows the run in about 10 s); a read-only bar (a class
	// student's) is the instructor's, and the animation follows it.
	animate(on, user) {
		this.animating = !!on;
		this.keep.stickyAnimating = this.animating;
		this.animBtn.setAttribute('aria-pressed', String(this.animating));
		this.animBtn.classList.toggle('btn-on', this.animating);
		this.animBtn.textContent = t(this.animating ? 'sticky.animate_stop' : 'sticky.animate');
		this.card.dataset.animating = this.animating ? '1' : '0';
		this.scrubBox.hidden = !this.animating;
		const rp = this.ctx.replay;
		if (user && this.animating && rp && !rp.readOnly()) {
			this.keep.stickyAt = -1;
			rp.playFromStart(rp.speed() > 0 ? rp.speed() : speedFor(rp.total()));
			return;
		}
		this.render();
	}

	// While animating: bars the position has not reached are not drawn yet
	// (hidden, in their place), and the ones whose events it just reached
	// (after the previous frame, up to this one) come in.
	animateBars(bars, prev) {
		const cur = this.cur;
		for (const b of bars) {
			const seq = Number(b.dataset.seq);
			if (seq > cur) b.classList.add('stk-unborn');
			else if (seq > prev && cur > prev) b.classList.add('stk-anim');
		}
	}

	setTab(tab) {
		this.tab = tab === 'time' ? 'time' : 'bytes';
		for (const [k, b] of Object.entries(this.tabBtns)) {
			b.setAttribute('aria-selected', String(k === this.tab));
			b.classList.toggle('stk-tab-on', k === this.tab);
		}
		this.render();
	}

	render() {
		const { ev, cur } = this.laneEvents();
		this.cur = cur;
		this.showFrame(cur);
		const prev = typeof this.keep.stickyAt === 'number' ? this.keep.stickyAt : -1;
		this.keep.stickyAt = cur;
		const any = LANES.some((l) => ev[l].length);
		if (!any) return;
		if (this.tab === 'time') this.renderTime(ev);
		else this.renderBytes(ev);
		if (this.animating) this.animateBars(LANES.flatMap((l) => [...this.lanes[l].track.querySelectorAll('.stk-bar')]), prev);

		for (const lane of LANES) {
			const shown = this.ev[lane];
			const data = lane === 'segment' ? shown.filter((e) => e.bytes > 0 && !e.retransmit).length : shown.length;
			this.lanes[lane].row.dataset.count = String(data);
			this.lanes[lane].count.textContent = ` · ${data}`;
			// A segment's number is its "i", the index the lab's evidence uses.
			replace(this.lists[lane], ev[lane].map((e) => h('li', {
				class: [e.bytes || e.dir === 's2c' ? '' : 'stk-ctl-item', ...this.marks(e), e.seq > cur ? 'stk-future' : ''].join(' ').trim(),
				attrs: { value: Number.isInteger(e.i) ? String(e.i) : null }, dataset: { i: String(e.i), seq: String(e.seq) },
			},
			h('span', { class: 'stk-time', text: fmtMs(timeOf(e)) }), ' ',
			e.dir === 's2c' ? h('span', { text: `ack ${e.ack} · win ${e.win}` }) : h('span', { text: t('sticky.bytes', { bytes: e.bytes }) }),
			typeof e.offset === 'number' && e.dir !== 's2c' ? h('span', { class: 'stk-range', text: ` [${e.offset}, ${e.offset + (e.bytes || 0)})` }) : null,
			e.flags ? ` ${e.flags}` : '', ' ',
			(Array.isArray(e.msgs) ? e.msgs : []).map((m) => h('span', { class: `stk-chip stk-m${m.msg % COLOURS}`, text: m.whole ? `#${m.msg}` : `#${m.msg}[${m.from}..${m.to})` })))));
		}
		this.countsEl.textContent = t('sticky.counts', {
			sends: this.ev.send.length,
			segments: this.ev.segment.filter((e) => e.bytes > 0 && !e.retransmit).length,
			recvs: this.ev.recv.length,
		});
	}

	// The animation's frame is the replay position (events shown: seq of
	// the last one + 1); the slider shows it and moves it.
	showFrame(cur) {
		const all = this.ctx.allEvents ? this.ctx.allEvents().length : 0;
		const pos = Number.isFinite(cur) ? cur + 1 : all;
		this.card.dataset.frame = String(pos);
		this.scrub.max = String(all);
		this.scrub.value = String(pos);
		this.scrub.disabled = !this.ctx.replay || this.ctx.replay.readOnly();
		this.scrub.setAttribute('aria-valuetext', t('player.pos', { n: pos, total: all }));
	}

	// The byte-stream ruler: x is the offset in the stream, so every send,
	// data segment and recv is a span over the bytes it carried, in stream
	// order, none hiding another. Segments without data (SYN, FIN) and the
	// receiver's ACKs are ticks at their offset (an ACK's is the byte it
	// acknowledges up to). Thin rules mark where each send() began: where a
	// recv's edges miss them, the message boundaries were lost.
	renderBytes(ev) {
		let total = 1;
		for (const lane of LANES) {
			for (const e of ev[lane]) {
				if (typeof e.offset === 'number') total = Math.max(total, e.offset + (e.bytes || 0));
				if (e.dir === 's2c' && typeof e.ack === 'number') total = Math.max(total, e.ack);
			}
		}
		const x = (off) => `${(Math.max(0, off) / total) * 100}%`;
		const starts = [...new Set(ev.send.map((e) => e.offset).filter((o) => typeof o === 'number' && o > 0))];
		for (const lane of LANES) {
			const L = this.lanes[lane];
			const bars = [];
			const rowEnd = []; // data spans: a retransmission goes a row down
			const tickAt = new Map(); // ticks at one offset stack up
			for (const e of ev[lane]) {
				const b = this.bar(e);
				if (e.seq > this.cur) b.classList.add('stk-future');
				const off = lane === 'ack' ? e.ack : e.offset;
				if (typeof off !== 'number') continue;
				if (lane === 'ack' || !e.bytes) {
					const k = tickAt.get(off) || 0;
					tickAt.set(off, k + 1);
					b.classList.add('stk-tick', `stk-tick${Math.min(k, 3)}`);
					b.style.left = x(off);
				} else {
					let row = rowEnd.findIndex((end) => end <= off);
					if (row < 0) row = rowEnd.length;
					rowEnd[row] = off + e.bytes;
					b.classList.add('stk-span', `stk-row${Math.min(row, 5)}`);
					b.style.left = x(off);
					b.style.width = `calc(${(e.bytes / total) * 100}% - 2px)`;
				}
				bars.push(b);
			}
			const rules = starts.length <= 200 ? starts.map((o) => {
				const r = h('span', { class: 'stk-rule', attrs: { 'aria-hidden': 'true' } });
				r.style.left = x(o);
				return r;
			}) : [];
			replace(L.track, rules, bars);
			L.track.className = `stk-track stk-track-bytes stk-rows${Math.max(1, Math.min(rowEnd.length, 6))}`;
		}
		replace(this.axisEl, h('span', { class: 'stk-axis-start', text: t('sticky.axis.bytes_start') }),
			h('span', { class: 'stk-axis-mid', text: t('sticky.axis.bytes') }),
			h('span', { class: 'stk-axis-end', text: t('sticky.axis.bytes_end', { n: total }) }));
	}

	// The time view: bars at their time on one axis; bars that would
	// overlap go a row down, as many rows as they need.
	renderTime(ev) {
		const all = LANES.flatMap((l) => ev[l]).map(timeOf).filter((v) => typeof v === 'number');
		const t0 = Math.min(...all);
		const span = Math.max(1, Math.max(...all) - t0);
		for (const lane of LANES) {
			const L = this.lanes[lane];
			const bars = [];
			const rowsEnd = [];
			for (const e of ev[lane]) {
				const b = this.bar(e);
				if (e.seq > this.cur) b.classList.add('stk-future');
				const xp = ((timeOf(e) - t0) / span) * 94;
				let row = rowsEnd.findIndex((end) => end <= xp);
				if (row < 0) row = rowsEnd.length;
				rowsEnd[row] = xp + 5.5;
				b.style.left = `${xp}%`;
				b.style.top = `${0.3 + row * 1.4}rem`;
				bars.push(b);
			}
			replace(L.track, bars);
			L.track.className = 'stk-track stk-track-time';
			L.track.style.height = `${Math.max(1, rowsEnd.length) * 1.4 + 0.6}rem`;
		}
		replace(this.axisEl, h('span', { class: 'stk-axis-start', text: `${fmtMs(t0)} ms` }),
			h('span', { class: 'stk-axis-mid', text: t('sticky.axis.time') }),
			h('span', { class: 'stk-axis-end', text: `${fmtMs(t0 + span)} ms` }));
	}
}

// pairs.js: UDP beside TCP on the same wire, message by message: what each run's evidence says happened to message i.
//
// udp-ping's probe i and tcp-echo's message i (client 1) are the same
// message sent over the same wire (same impairment and seed, "Same path over
// TCP"). The two runs' summaries count different things, so they are paired
// here by message, from the events alone:
//   UDP: the probe events (reply on time, late, lost with where the wire lost
//        it, duplicates, out of order) and the RTT ping measured;
//   TCP: the echo event (the whole reply came back, its RTT), the captured
//        segments whose bytes lie inside the message's bytes (a retransmitted
//        one is the evidence that TCP sent them again) and the relay's own
//        records of the frames it dropped carrying those bytes.
// A lane that is incomplete says so, and nothing is concluded from it: a
// run that did not end ok leaves its messages without an outcome; without a
// capture (or one that missed frames) TCP's retransmissions are unknown.
// showPairs() draws the result in the two panes: a count and the message
// table above each pane's replay bar, and each pane's own row of a message
// that differs (udp-ping's probe row, tcp-echo's echo row) highlighted.

import { h, fmtDuration } from './dom.js';
import { t } from './i18n.js';

// The reasons a message differs between the two runs, in the order shown.
export const REASONS = ['udp_lost', 'udp_late', 'tcp_missing', 'tcp_retransmitted', 'udp_duplicated', 'udp_reordered'];

function runEnd(events) {
	const last = events.length ? events[events.length - 1] : null;
	return last && last.type === 'run.end' ? last : null;
}

// The UDP run's probes: n -> {state, rtt_us, dups, reordered, lost_by, cause, wire}.
function udpProbes(events) {
	const probes = new Map();
	let sent = 0;
	for (const ev of events) {
		if (ev.type === 'syscall' && ev.who === 'client' && ev.call === 'sendto' && typeof ev.ret === 'number' && ev.ret >= 0) {
			sent++;
			if (!probes.has(sent)) probes.set(sent, { state: 'pending', rtt_us: null, dups: 0, reordered: false });
		}
		if (ev.type !== 'probe' || !Number.isInteger(ev.probe)) continue;
		const p = probes.get(ev.probe) || { state: 'pending', rtt_us: null, dups: 0, reordered: false };
		probes.set(ev.probe, p);
		switch (ev.status) {
		case 'reply':
			p.state = 'ontime';
			p.rtt_us = ev.rtt_us;
			p.reordered = ev.reordered === true;
			break;
		case 'lost':
			// A late reply after it turns the loss into "late".
			if (p.state !== 'late') p.state = 'lost';
			p.lost_by = ev.lost_by || null;
			p.cause = ev.cause || null;
			break;
		case 'late':
			p.state = 'late';
			p.rtt_us = ev.rtt_us;
			break;
		case 'dup':
			p.dups++;
			break;
		default:
			break;
		}
		if (ev.wire && typeof ev.wire === 'object') p.wire = ev.wire;
	}
	return { probes, sent };
}

// seq numbers are 32-bit and wrap.
const mod32 = (x) => ((x % 4294967296) + 4294967296) % 4294967296;

// The TCP run's messages of client 1: i -> {state, rtt_us, bytes, retrans, dropped}.
function tcpMessages(events, end, capture) {
	const msgs = new Map();
	for (const ev of events) {
		if (ev.type !== 'echo' || ev.conn !== 1 || !Number.isInteger(ev.index)) continue;
		msgs.set(ev.index, { state: ev.ok === true ? 'delivered' : 'bad', rtt_us: ev.rtt_us, bytes: ev.bytes, retrans: null, dropped: null });
	}
	// Each message's bytes in the stream, both ways (the reply is as long as
	// the message): [from, to) relative to the ISN, data from 1.
	const range = new Map();
	let off = 1;
	for (const i of [...msgs.keys()].sort((a, b) => a - b)) {
		const m = msgs.get(i);
		if (i !== range.size + 1 || typeof m.bytes !== 'number') break;
		range.set(i, [off, off + m.bytes]);
		off += m.bytes;
	}
	const segs = events.filter((e) => e.type === 'segment' && e.conn === 1 && (e.dir === 'c2s' || e.dir === 's2c') && e.len > 0 && typeof e.rel_seq === 'number');
	const inside = (r, from, len) => r && from < r[1] && from + len > r[0];
	if (capture.known) {
		for (const [i, r] of range) {
			const m = msgs.get(i);
			m.retrans = { c2s: 0, s2c: 0 };
			for (const s of segs) if (s.retransmit === true && inside(r, s.rel_seq, s.len)) m.retrans[s.dir]++;
		}
	}
	// The relay's drops of frames carrying the message's bytes: its summary
	// names ports, raw seq and length; the capture gives each direction's ISN.
	const isn = {};
	const ports = {};
	for (const s of events.filter((e) => e.type === 'segment' && e.conn === 1 && typeof e.seq_raw === 'number' && typeof e.rel_seq === 'number')) {
		if (isn[s.dir] === undefined) {
			isn[s.dir] = mod32(s.seq_raw - s.rel_seq);
			ports[s.dir] = `${s.src && s.src.port}→${s.dst && s.dst.port}`;
		}
	}
	const wireSum = end && end.summary && end.summary.wire;
	const wireKnown = !!(wireSum && typeof wireSum === 'object' && !(wireSum.events_suppressed > 0) && isn.c2s !== undefined && isn.s2c !== undefined);
	if (wireKnown) {
		for (const [, m] of msgs) m.dropped = { c2s: 0, s2c: 0 };
		for (const w of events) {
			if (w.type !== 'wire' || w.action !== 'drop' || w.proto !== 'TCP' || (w.dir !== 'c2s' && w.dir !== 's2c')) continue;
			const mm = /:(\d+) → [^:]+:(\d+) .* seq (\d+) ack \d+ .*len (\d+)$/.exec(String(w.summary || ''));
			if (!mm || `${mm[1]}→${mm[2]}` !== ports[w.dir]) continue;
			const rel = mod32(Number(mm[3]) - isn[w.dir]);
			const len = Number(mm[4]);
			for (const [i, r] of range) if (len > 0 && inside(r, rel, len)) msgs.get(i).dropped[w.dir]++;
		}
	}
	return msgs;
}

// Whether the TCP run's capture can show every retransmission: on, and
// complete (no frame missed).
function captureOf(events, end) {
	const start = events[0] || {};
	const on = !!(start.params && start.params.capture === true);
	if (!on) return { known: false, why: 'capture_off' };
	const c = end && end.summary && end.summary.capture;
	if (!c || c.complete !== true || c.drops > 0 || c.ring_full > 0) return { known: false, why: 'capture_incomplete', drops: c ? c.drops : null };
	return { known: true };
}

// Pair a udp-ping run's events with a tcp-echo run's, message by message.
// Returns null until both runs have ended; else
//   {rows: [{n, udp, tcp, verdict: 'same'|'differ'|'unknown', reasons, unknown}],
//    differ, same, unknown, lanes: [{side, key, vars}]} (what is incomplete).
export function pairUdpTcp(udpEvents, tcpEvents) {
	const ue = runEnd(udpEvents);
	const te = runEnd(tcpEvents);
	if (!ue || !te) return null;
	const lanes = [];
	const { probes, sent } = udpProbes(udpEvents);
	const capture = captureOf(tcpEvents, te);
	const msgs = tcpMessages(tcpEvents, te, capture);
	if (ue.status !== 'ok') lanes.push({ side: 'udp', key: 'pairs.lane.ended', vars: { status: ue.status } });
	if (te.status !== 'ok') lanes.push({ side: 'tcp', key: 'pairs.lane.ended', vars: { status: te.status } });
	if (!capture.known) lanes.push({ side: 'tcp', key: `pairs.lane.${capture.why}`, vars: { drops: capture.drops ?? '?' } });
	const udpCount = Number(udpEvents[0]?.params?.count) || sent;
	const tcpCount = Number(tcpEvents[0]?.params?.messages) || msgs.size;
	if (tcpCount < udpCount) lanes.push({ side: 'tcp', key: 'pairs.lane.fewer', vars: { n: tcpCount, total: udpCount } });
	const rows = [];
	const total = Math.max(udpCount, tcpCount, sent, msgs.size);
	for (let n = 1; n <= total; n++) {
		const u = probes.get(n) || null;
		const tm = n <= tcpCount ? (msgs.get(n) || { state: te.status === 'ok' ? 'missing' : 'pending', rtt_us: null, retrans: null, dropped: null }) : null;
		rows.push({ n, udp: u, tcp: tm, ...verdict(u, tm) });
	}
	return {
		rows, lanes,
		differ: rows.filter((r) => r.verdict === 'differ').length,
		same: rows.filter((r) => r.verdict === 'same').length,
		unknown: rows.filter((r) => r.verdict === 'unknown').length,
	};
}

// Same, differ (with the reasons) or unknown (why no conclusion is drawn).
function verdict(u, tm) {
	if (!u || u.state === 'pending') return { verdict: 'unknown', reasons: [], unknown: 'udp_no_outcome' };
	if (!tm) return { verdict: 'unknown', reasons: [], unknown: 'tcp_not_sent' };
	if (tm.state === 'pending') return { verdict: 'unknown', reasons: [], unknown: 'tcp_no_outcome' };
	const tcpGot = tm.state === 'delivered';
	const reasons = [];
	if (tcpGot && u.state === 'lost') reasons.push('udp_lost');
	if (tcpGot && u.state === 'late') reasons.push('udp_late');
	if (!tcpGot && u.state === 'ontime') reasons.push('tcp_missing');
	const retrans = tm.retrans ? tm.retrans.c2s + tm.retrans.s2c : null;
	if (tcpGot && u.state === 'ontime' && retrans > 0) reasons.push('tcp_retransmitted');
	if (tcpGot && u.dups > 0) reasons.push('udp_duplicated');
	if (tcpGot && u.reordered) reasons.push('udp_reordered');
	if (reasons.length) return { verdict: 'differ', reasons, unknown: null };
	// Both arrived: whether TCP sent it twice only the capture can tell.
	if (tcpGot && retrans === null) return { verdict: 'unknown', reasons: [], unknown: 'tcp_retrans_unknown' };
	return { verdict: 'same', reasons: [], unknown: null };
}

// ---- drawing ----

const dirs = (o, key) => ['c2s', 's2c'].filter((d) => o && o[d] > 0).map((d) => t(key, { n: o[d], dir: t(`pairs.dir.${d}`) }));

// What happened to message n on UDP, in words.
export function udpText(u) {
	if (!u || u.state === 'pending') return t('pairs.udp.none');
	const parts = [];
	if (u.state === 'ontime') parts.push(t('pairs.udp.reply', { rtt: fmtDuration(u.rtt_us) }));
	else if (u.state === 'late') parts.push(t('pairs.udp.late', { rtt: fmtDuration(u.rtt_us) }));
	else parts.push(u.lost_by === 'c2s' || u.lost_by === 's2c' ? t('pairs.udp.lost_by', { dir: t(`pairs.dir.${u.lost_by}`) }) : t('pairs.udp.lost'));
	if (u.reordered) parts.push(t('ping.tag.reordered'));
	if (u.dups) parts.push(t('pairs.udp.dups', { n: u.dups + 1 }));
	return parts.join(' · ');
}

// What happened to message n on TCP, in words: delivered (its RTT), sent
// again (the captured retransmissions), what the wire dropped of it.
export function tcpText(m) {
	if (!m) return t('pairs.tcp.not_sent');
	if (m.state === 'pending') return t('pairs.tcp.none');
	if (m.state === 'missing') return t('pairs.tcp.missing');
	const parts = [t(m.state === 'bad' ? 'pairs.tcp.bad' : 'pairs.tcp.delivered', { rtt: fmtDuration(m.rtt_us) })];
	if (m.retrans === null) parts.push(t('pairs.tcp.retrans_unknown'));
	else parts.push(...dirs(m.retrans, 'pairs.tcp.retrans'));
	parts.push(...dirs(m.dropped, 'pairs.tcp.dropped'));
	return parts.join(' · ');
}

function whyText(r) {
	if (r.verdict === 'differ') return r.reasons.map((k) => t(`pairs.why.${k}`, { n: r.udp ? r.udp.dups + 1 : 0 })).join('; ');
	if (r.verdict === 'unknown') return t(`pairs.unknown.${r.unknown}`);
	return t('pairs.same');
}

// Rows of the message table drawn at most (the counts cover every message).
const MAX_TABLE = 200;

// Draw the pairing in both panes (udpPane, tcpPane: the .pane elements).
// Everything it adds carries cmp-pairs-el, so app.js can clear it.
export function showPairs(udpPane, tcpPane, res) {
	for (const [pane, side] of [[udpPane, 'udp'], [tcpPane, 'tcp']]) {
		const player = pane.querySelector(':scope > .player');
		if (!player) continue;
		const note = h('p', { class: 'cmp-note cmp-pairs-el', attrs: { role: 'status' }, dataset: { differ: String(res.differ), unknown: String(res.unknown) },
			text: res.differ ? t('pairs.differ', { n: res.differ, total: res.rows.length }) : t('pairs.none_differ', { total: res.rows.length }) });
		const lanes = res.lanes.map((l) => h('p', { class: 'cmp-lane cmp-pairs-el', dataset: { side: l.side, key: l.key },
			text: t(`pairs.side.${l.side}`, { text: t(l.key, l.vars) }) }));
		const unknown = res.unknown ? h('p', { class: 'cmp-lane cmp-pairs-el', text: t('pairs.unknown_count', { n: res.unknown }) }) : null;
		const rows = res.rows.slice(0, MAX_TABLE).map((r) => h('tr', {
			class: r.verdict === 'differ' ? 'cmp-diff' : '', dataset: { n: String(r.n), verdict: r.verdict },
		},
		h('td', { class: 'num', text: String(r.n) }),
		h('td', { text: udpText(r.udp) }),
		h('td', { text: tcpText(r.tcp) }),
		h('td', { class: 'cmp-why', text: whyText(r) })));
		const more = res.rows.length > MAX_TABLE ? h('p', { class: 'muted', text: t('run.truncated', { n: res.rows.length - MAX_TABLE }) }) : null;
		const table = h('details', { class: 'cmp-pairs cmp-pairs-el', attrs: { open: true }, dataset: { side } },
			h('summary', { text: t('pairs.title') }),
			h('p', { class: 'help', text: t('pairs.help') }),
			h('div', { class: 'cmp-pairs-scroll' }, h('table', { class: 'cmp-pairs-table' },
				h('thead', {}, h('tr', {}, h('th', { text: '#' }), h('th', { text: 'UDP' }), h('th', { text: 'TCP' }), h('th', { text: t('pairs.col.why') }))),
				h('tbody', {}, rows))),
			more);
		player.before(note, ...lanes, ...(unknown ? [unknown] : []), table);
	}
	markPairRows(udpPane, tcpPane, res);
}

// Each pane's own row of a message that differs is highlighted, the other
// run's outcome in its tooltip; called again whenever a pane redraws its
// view (stepping rebuilds it from the first event).
export function markPairRows(udpPane, tcpPane, res) {
	if (!res) return;
	const byN = new Map(res.rows.map((r) => [r.n, r]));
	const mark = (el, r, other) => {
		const d = r && r.verdict === 'differ';
		el.classList.toggle('cmp-diff', d);
		el.dataset.pair = r ? r.verdict : '';
		if (d) el.title = `${other}: ${whyText(r)}`;
		else el.removeAttribute('title');
	};
	if (udpPane) {
		for (const el of udpPane.querySelectorAll('.player-stage .prow[data-probe]')) {
			const r = byN.get(Number(el.dataset.probe));
			mark(el, r, r ? `TCP ${tcpText(r.tcp)}` : '');
		}
	}
	if (tcpPane) {
		for (const el of tcpPane.querySelectorAll('.player-stage .erow[data-index]')) {
			const r = el.dataset.conn === '1' ? byN.get(Number(el.dataset.index)) : null;
			mark(el, r, r ? `UDP ${udpText(r.udp)}` : '');
		}
	}
}

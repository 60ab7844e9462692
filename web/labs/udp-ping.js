// udp-ping.js: the view of the udp-ping lab: a live RTT chart, ping-style statistics, every probe and what the wire did to it.
//
// Everything shown is computed from the events: "probe" events (reply, lost,
// late, dup, unexpected), the client's sendto() calls (probes sent) and the
// relay's "wire" events. The statistics follow ping(8): loss counts probes
// never answered, late replies are not "received", duplicates are counted and
// never taken as replies, mdev is sqrt(mean(rtt^2) - mean(rtt)^2).
// The chart is uPlot (npm, embedded in the binary at /vendor/).

import uPlot from '../vendor/uPlot.esm.js';
import { h, replace, fmtMs, fmtDuration, fmtAddr, fmtValue } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout, MAX_ROWS, commandBox } from './common.js';
import { syscallCell, failed } from './syscall.js';
import { rawBlock } from './raw.js';
import { wireCell, sameNetworkParams } from './net.js';

// With your own client, the lab's client knobs do not apply (the form disables them).
export const formHints = {
	byo: { param: 'mode', value: 'server', clientOnly: ['count', 'interval_ms', 'size', 'timeout_ms'] },
	main: ['mode', 'count', 'interval_ms', 'network', 'c2s_delay_ms', 'c2s_loss_pct', 's2c_loss_pct'],
};

// tcp-echo captures at most this many bytes sent in all (messages x size).
const CAPTURE_MAX_BYTES = 4 * 1024 * 1024;

const COLORS = { rtt: '#1d4ed8', late: '#b45309', c2s: '#b91c1c', s2c: '#7c3aed', other: '#6b7280' };

let cssAdded = false;
function addChartCss() {
	if (cssAdded) return;
	cssAdded = true;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/vendor/uPlot.min.css' } }));
}

export function create(root, ctx) {
	const frame = new RunFrame(root, ctx);
	const view = new PingView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

// Running statistics from the events, the same way the lab computes its summary.
export class PingStats {
	constructor() {
		this.sent = 0;
		this.received = 0;
		this.lostEvents = 0;
		this.late = 0;
		this.dups = 0;
		this.reordered = 0;
		this.unexpected = 0;
		this.rtts = [];
	}

	take(ev) {
		if (ev.type === 'syscall' && ev.who === 'client' && ev.call === 'sendto' && !failed(ev)) this.sent++;
		if (ev.type !== 'probe') return;
		switch (ev.status) {
		case 'reply':
			this.received++;
			if (ev.reordered === true) this.reordered++;
			if (typeof ev.rtt_us === 'number') this.rtts.push(ev.rtt_us);
			break;
		case 'lost': this.lostEvents++; break;
		case 'late': this.late++; break;
		case 'dup': this.dups++; break;
		case 'unexpected': this.unexpected++; break;
		default: break;
		}
	}

	get lost() {
		return this.lostEvents - this.late;
	}

	get lossPct() {
		return this.sent ? (100 * this.lost) / this.sent : 0;
	}

	rtt() {
		const n = this.rtts.length;
		if (!n) return null;
		let min = Infinity, max = -Infinity, sum = 0, sum2 = 0;
		for (const x of this.rtts) {
			if (x < min) min = x;
			if (x > max) max = x;
			sum += x;
			sum2 += x * x;
		}
		const avg = sum / n;
		const v = sum2 / n - avg * avg;
		return { min, avg: Math.round(avg), max, mdev: Math.round(v > 0 ? Math.sqrt(v) : 0) };
	}
}

class PingView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.stats = new PingStats();
		this.start = null;
		this.byo = false;
		this.count = 0;
		this.probes = new Map(); // probe number -> {row, cells, state}
		this.points = new Map(); // probe number -> {rtt, late, lostBy}
		this.probeRows = 0;
		this.hiddenProbes = 0;
		this.wireRows = 0;
		this.traceRows = 0;
		this.dgramRows = 0;
		this.chart = null;
		this.chartDirty = false;

		this.byoEl = h('section', { class: 'card byo' });
		this.byoEl.hidden = true;

		// Statistics, the chart, and the button that runs TCP over the same wire.
		this.statsEl = h('dl', { class: 'tiles ping-stats', attrs: { 'aria-live': 'polite' } });
		this.tcpBtn = h('button', { class: 'btn btn-small tcp-same', attrs: { type: 'button' }, text: t('ping.tcp_same') });
		this.tcpBtn.addEventListener('click', () => this.runTcp());
		this.tcpHelp = h('p', { class: 'help', text: t('ping.tcp_same_help') });
		this.tcpStatus = h('p', { class: 'muted tcp-status', attrs: { role: 'status' } });
		this.chartEl = h('div', { class: 'ping-chart', attrs: { role: 'img', 'aria-label': t('ping.chart_label') } });
		this.chartEmpty = h('p', { class: 'muted', text: t('ping.chart_empty') });
		this.statsCard = h('section', { class: 'card ping-card' },
			h('h3', { text: t('ping.stats') }), this.statsEl,
			h('div', { class: 'tcp-row' }, this.tcpBtn, this.tcpHelp, this.tcpStatus));
		this.chartCard = h('section', { class: 'card ping-chart-card' },
			h('h3', { text: t('ping.chart') }), h('p', { class: 'help', text: t('ping.chart_help') }),
			this.chartEmpty, this.chartEl);

		// One row per probe.
		this.probeBody = h('div', { class: 'trace-body', attrs: { role: 'rowgroup' } });
		const head = (cls, key) => h('div', { class: `tcell ${cls}`, attrs: { role: 'columnheader' }, text: t(key) });
		this.probeTable = h('div', { class: 'probe-table', attrs: { role: 'table', 'aria-label': t('ping.probes') } },
			h('div', { class: 'probe-head', attrs: { role: 'rowgroup' } }, h('div', { class: 'prow', attrs: { role: 'row' } },
				head('num', 'ping.col.seq'), head('', 'ping.col.status'), head('num', 'ping.col.rtt'),
				head('num', 'ping.col.bytes'), head('', 'ping.col.c2s'), head('', 'ping.col.s2c'))),
			this.probeBody);
		this.probeMore = h('p', { class: 'muted' });
		this.probeMore.hidden = true;
		this.probeCard = h('section', { class: 'card probe-card' },
			h('h3', { text: t('ping.probes') }), h('div', { class: 'scroll probe-scroll' }, this.probeTable), this.probeMore);

		// Bring your own client: one row per datagram.
		this.dgramBody = h('div', { class: 'dgram-list' });
		this.dgramCard = h('section', { class: 'card dgram-card' },
			h('h3', { text: t('ping.datagrams') }), h('p', { class: 'help', text: t('ping.datagrams_help') }), this.dgramBody);
		this.dgramCard.hidden = true;

		// The wire's own reports, and every socket call.
		this.wireList = h('div', { class: 'wire-list' });
		this.wireCard = h('details', { class: 'card wire-card' },
			h('summary', { text: t('ping.wire_events') }), h('p', { class: 'help', text: t('ping.wire_help') }), this.wireList);
		this.wireCard.hidden = true;
		this.traceList = h('div', { class: 'ping-trace' });
		this.notesEl = h('div', { class: 'ping-notes' });
		this.traceCard = h('details', { class: 'card ping-trace-card' },
			h('summary', { text: t('echo.trace') }), this.traceList);

		root.appendChild(this.byoEl);
		root.appendChild(this.notesEl);
		root.appendChild(h('div', { class: 'ping-layout' }, this.statsCard, this.chartCard));
		root.appendChild(this.dgramCard);
		root.appendChild(this.probeCard);
		root.appendChild(this.wireCard);
		root.appendChild(this.traceCard);
		this.updateStats();
		this.updateTcpButton();
	}

	push(events) {
		const probeFrag = document.createDocumentFragment();
		const wireFrag = document.createDocumentFragment();
		const traceFrag = document.createDocumentFragment();
		const dgramFrag = document.createDocumentFragment();
		let statsChanged = false;

		for (const ev of events) {
			this.stats.take(ev);
			if (this.frame.take(ev)) {
				if (ev.type === 'run.start') this.onStart(ev);
				if (ev.type === 'run.end') this.updateTcpButton();
				statsChanged = true;
				continue;
			}
			switch (ev.type) {
			case 'probe':
				this.onProbe(probeFrag, ev);
				statsChanged = true;
				break;
			case 'wire':
				this.addWire(wireFrag, ev);
				break;
			case 'syscall':
				if (ev.who === 'client' && ev.call === 'sendto' && !failed(ev)) {
					statsChanged = true;
					this.probeRow(probeFrag, this.stats.sent);
				}
				this.addTrace(traceFrag, ev, syscallCell(ev));
				if (this.byo && ev.who === 'server' && (ev.call === 'recvfrom' || ev.call === 'sendto')) this.addDatagram(dgramFrag, ev);
				break;
			case 'listening':
				this.onListening(ev);
				this.addTrace(traceFrag, ev, h('div', { class: 'sc sc-event', text: t('ping.bound', { addr: fmtAddr(ev) }) }));
				break;
			case 'note':
				this.notesEl.appendChild(noteCallout(ev));
				// Said where it happens too: probe 1's row waited for ARP.
				if ((ev.key === 'ping.first_arp' || ev.key === 'ping.first_arp_wire') && this.probes.get(1)) {
					const row = this.probes.get(1);
					row.el.dataset.arp = '1';
					row.status.appendChild(h('span', { class: 'ping-arp', attrs: { title: ev.text || '' },
						text: ` · ${t('ping.tag.arp', { extra_ms: ev.params?.extra_ms ?? '?' })}` }));
				}
				break;
			case 'error':
				this.notesEl.appendChild(errorCallout(ev));
				break;
			default:
				this.addTrace(traceFrag, ev, rawBlock(ev));
			}
		}
		this.probeBody.appendChild(probeFrag);
		if (wireFrag.firstChild) {
			this.wireList.appendChild(wireFrag);
			this.wireCard.hidden = false;
		}
		this.traceList.appendChild(traceFrag);
		if (dgramFrag.firstChild) this.dgramBody.appendChild(dgramFrag);
		if (this.hiddenProbes) {
			this.probeMore.textContent = t('run.truncated', { n: this.hiddenProbes });
			this.probeMore.hidden = false;
		}
		if (statsChanged) this.updateStats();
		if (this.chartDirty) this.drawChart();
		this.frame.flush();
	}

	onStart(ev) {
		this.start = ev;
		const p = ev.params || {};
		this.byo = p.mode === 'server';
		this.count = Number(p.count) || 0;
		this.statsCard.hidden = this.byo;
		this.chartCard.hidden = this.byo;
		this.probeCard.hidden = this.byo;
		this.dgramCard.hidden = !this.byo;
		if (this.byo) {
			replace(this.byoEl, h('h3', { text: t('byo.heading') }), h('p', { class: 'muted', text: t('byo.waiting') }));
			this.byoEl.hidden = false;
		}
		this.updateTcpButton();
	}

	onListening(ev) {
		if (ev.byo !== true) return;
		this.byo = true;
		const host = this.ctx.byoHost || ev.addr || '127.0.0.1';
		const port = Number(ev.port);
		const nc = `nc -u ${host} ${port}`;
		const py = `python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'hello', ('${host}', ${port})); print(s.recvfrom(2048))"`;
		replace(this.byoEl,
			h('h3', { text: t('byo.heading') }),
			h('div', { attrs: { role: 'status' } },
				h('p', { text: t('ping.byo_intro') }),
				h('div', { class: 'byo-target' },
					h('span', { class: 'big-addr', dataset: { host, port: String(port) } },
						h('span', { class: 'byo-host', text: host }), ':', h('span', { class: 'byo-port', text: String(port) })))),
			commandBox(t('ping.byo_nc'), nc, 'cmd-nc'),
			commandBox(t('ping.byo_python'), py, 'cmd-python'),
			h('p', { class: 'help', text: t('ping.byo_hint', { idle: ev.idle_timeout_s ?? '?' }) }));
		this.byoEl.hidden = false;
	}

	onProbe(frag, ev) {
		const n = Number(ev.probe);
		if (ev.status === 'unexpected' || !Number.isInteger(n)) {
			this.addTrace(frag, ev, rawBlock(ev));
			return;
		}
		const pt = this.points.get(n) || { rtt: null, late: null, lostBy: null };
		if (ev.status === 'reply') pt.rtt = ev.rtt_us / 1000;
		if (ev.status === 'late') {
			pt.late = ev.rtt_us / 1000;
			pt.lostBy = null;
		}
		if (ev.status === 'lost') pt.lostBy = ev.lost_by || 'other';
		this.points.set(n, pt);
		this.chartDirty = true;

		const row = this.probeRow(frag, n);
		if (!row) return;
		if (ev.status === 'dup') {
			row.dups++;
		} else {
			row.state = ev.status;
			if (typeof ev.rtt_us === 'number') row.rtt.textContent = fmtDuration(ev.rtt_us);
			if (typeof ev.bytes === 'number') row.bytes.textContent = String(ev.bytes);
		}
		const tags = [t(`ping.status.${row.state || 'reply'}`)];
		if (ev.reordered === true || row.reordered) {
			row.reordered = true;
			tags.push(t('ping.tag.reordered'));
		}
		if (row.dups) tags.push(t('ping.tag.dup', { n: row.dups }));
		if (ev.ok === false) tags.push(t('ping.tag.bad'));
		row.status.textContent = tags.join(' · ');
		if (row.state === 'lost' && ev.cause) row.status.title = ev.cause;
		row.el.dataset.status = row.state || '';
		if (ev.wire && typeof ev.wire === 'object') {
			row.c2s.textContent = wireText(ev.wire.c2s);
			row.s2c.textContent = wireText(ev.wire.s2c);
			row.c2s.dataset.action = (ev.wire.c2s && ev.wire.c2s.action) || '';
			row.s2c.dataset.action = (ev.wire.s2c && ev.wire.s2c.action) || '';
		}
	}

	// The row of probe n, made when it is sent (so rows stay in probe order).
	probeRow(frag, n) {
		let row = this.probes.get(n);
		if (row) return row;
		if (this.probeRows >= MAX_ROWS) {
			this.hiddenProbes++;
			return null;
		}
		this.probeRows++;
		const cell = (cls) => h('div', { class: `tcell ${cls}`, attrs: { role: 'cell' } });
		row = { el: null, seq: cell('num'), status: cell('st'), rtt: cell('num'), bytes: cell('num'), c2s: cell('w'), s2c: cell('w'), dups: 0 };
		row.seq.textContent = String(n);
		row.status.textContent = t('ping.status.sent');
		row.el = h('div', { class: 'prow', attrs: { role: 'row' }, dataset: { probe: String(n), status: 'sent' } },
			row.seq, row.status, row.rtt, row.bytes, row.c2s, row.s2c);
		this.probes.set(n, row);
		frag.appendChild(row.el);
		return row;
	}

	addWire(frag, ev) {
		if (this.wireRows >= MAX_ROWS) return;
		this.wireRows++;
		frag.appendChild(h('div', { class: 'wire-row', dataset: { probe: ev.probe === undefined ? '' : String(ev.probe) } },
			h('span', { class: 'c-time', text: fmtMs(ev.t_us) }),
			ev.probe !== undefined ? h('span', { class: 'conn-tag', text: t('ping.probe_tag', { n: ev.probe }) }) : null,
			wireCell(ev)));
	}

	addTrace(frag, ev, content) {
		if (this.traceRows >= MAX_ROWS) return;
		this.traceRows++;
		frag.appendChild(h('div', { class: `ping-trow who-${String(ev.who || 'none').replace(/[^a-z]/g, '')}` },
			h('span', { class: 'c-time', text: fmtMs(ev.t_us) }),
			h('span', { class: 'who', text: ev.who || '' }),
			content));
	}

	addDatagram(frag, ev) {
		if (this.dgramRows >= MAX_ROWS) return;
		this.dgramRows++;
		const from = ev.call === 'recvfrom' ? ev.from : ev.args && ev.args.to;
		frag.appendChild(h('div', { class: `dgram-row dgram-${ev.call}` },
			h('span', { class: 'c-time', text: fmtMs(ev.t_us) }),
			h('span', { class: 'dgram-dir', text: t(ev.call === 'recvfrom' ? 'ping.dgram_in' : 'ping.dgram_out') }),
			h('code', { class: 'dgram-peer', text: fmtAddr(from) }),
			h('span', { class: 'bytes', text: t('echo.bytes', { n: ev.bytes ?? ev.ret }) }),
			typeof ev.data === 'string' ? h('code', { class: 'data', text: `"${ev.data}"` }) : null));
	}

	updateStats() {
		const s = this.stats;
		const r = s.rtt();
		const tiles = [
			['sent', s.sent], ['received', s.received], ['lost', s.lost],
			['loss_pct', `${s.lossPct.toFixed(1)} %`], ['late', s.late], ['duplicates', s.dups],
			['reordered', s.reordered],
			['rtt_min', r ? fmtDuration(r.min) : '—'], ['rtt_avg', r ? fmtDuration(r.avg) : '—'],
			['rtt_max', r ? fmtDuration(r.max) : '—'], ['rtt_mdev', r ? fmtDuration(r.mdev) : '—'],
		];
		replace(this.statsEl, tiles.map(([k, v]) => h('div', { class: 'tile', dataset: { key: k } },
			h('dt', { text: t(`ping.stat.${k}`) }),
			h('dd', { text: fmtValue(v), dataset: { raw: rawStat(s, r, k) } }))));
	}

	updateTcpButton() {
		const net = this.start && this.start.network;
		const live = this.frame.status === 'running' && this.ctx.live;
		const usable = !!(this.start && !this.byo && this.ctx.runLab);
		this.tcpBtn.hidden = !usable;
		this.tcpHelp.hidden = !usable;
		this.tcpBtn.disabled = !usable || live;
		if (usable && net && net.kind === 'two-hosts') this.tcpHelp.textContent = t('ping.tcp_same_help');
		else if (usable) this.tcpHelp.textContent = t('ping.tcp_same_help_loopback');
	}

	runTcp() {
		if (!this.start || !this.ctx.runLab) return;
		const p = this.start.params || {};
		const params = {
			...sameNetworkParams(this.start),
			messages: Math.min(Number(p.count) || 3, 1000),
			size: Math.min(Number(p.size) || 0, 65536),
			interval_ms: Math.min(Number(p.interval_ms) || 0, 5000),
		};
		// The segments are the evidence of what TCP sent again: captured
		// where this run could capture (its sandbox had CAP_NET_RAW) and
		// within tcp-echo's capture limit; else the comparison says so.
		const caps = (this.start.sandbox && this.start.sandbox.caps) || [];
		params.capture = Array.isArray(caps) && caps.includes('CAP_NET_RAW') && params.messages * params.size <= CAPTURE_MAX_BYTES;
		const ok = this.ctx.runLab('tcp-echo', params);
		this.tcpStatus.textContent = ok ? t('ping.tcp_started') : t('ping.tcp_busy');
	}

	drawChart() {
		this.chartDirty = false;
		const ns = [...this.points.keys()].sort((a, b) => a - b);
		if (!ns.length) return;
		this.chartEmpty.hidden = true;
		let top = 0;
		for (const p of this.points.values()) {
			if (p.rtt !== null && p.rtt > top) top = p.rtt;
			if (p.late !== null && p.late > top) top = p.late;
		}
		const band = top > 0 ? top * 1.1 : 1;
		const data = [ns, [], [], [], [], []];
		for (const n of ns) {
			const p = this.points.get(n);
			data[1].push(p.rtt);
			data[2].push(p.late);
			data[3].push(p.lostBy === 'c2s' ? band : null);
			data[4].push(p.lostBy === 's2c' ? band : null);
			data[5].push(p.lostBy === 'other' ? band : null);
		}
		if (!this.chart) {
			addChartCss();
			const width = Math.max(280, this.chartEl.clientWidth || 600);
			const pts = (color) => ({ show: true, size: 8, fill: color, stroke: color });
			const noLine = () => null;
			this.chart = new uPlot({
				width,
				height: 260,
				scales: { x: { time: false } },
				// A key to the series, not the values under the cursor
				// (which read "--" until a point is hovered).
				legend: { live: false },
				axes: [{ label: t('ping.axis_probe') }, { label: t('ping.axis_rtt') }],
				series: [
					{ label: t('ping.col.seq') },
					{ label: t('ping.series.rtt'), stroke: COLORS.rtt, width: 1.5, points: pts(COLORS.rtt), spanGaps: false },
					{ label: t('ping.series.late'), stroke: COLORS.late, paths: noLine, points: pts(COLORS.late) },
					{ label: t('ping.series.lost_c2s'), stroke: COLORS.c2s, paths: noLine, points: pts(COLORS.c2s) },
					{ label: t('ping.series.lost_s2c'), stroke: COLORS.s2c, paths: noLine, points: pts(COLORS.s2c) },
					{ label: t('ping.series.lost'), stroke: COLORS.other, paths: noLine, points: pts(COLORS.other) },
				],
			}, data, this.chartEl);
			if (typeof ResizeObserver === 'function') {
				this.resizer = new ResizeObserver(() => {
					const w = this.chartEl.clientWidth;
					if (this.chart && w > 0 && Math.abs(w - this.chart.width) > 4) this.chart.setSize({ width: w, height: 260 });
				});
				this.resizer.observe(this.chartEl);
			}
		} else {
			this.chart.setData(data);
		}
		this.chartEl.dataset.points = String(ns.length);
		this.chartEl.dataset.lost = String(data[3].concat(data[4], data[5]).filter((x) => x !== null).length);
	}

	destroy() {
		if (this.resizer) this.resizer.disconnect();
		if (this.chart) this.chart.destroy();
		this.chart = null;
	}

	get status() {
		return this.frame.status;
	}
}

// The exact number behind a tile, for tests and copy-paste (data-raw).
function rawStat(s, r, k) {
	switch (k) {
	case 'sent': return String(s.sent);
	case 'received': return String(s.received);
	case 'lost': return String(s.lost);
	case 'late': return String(s.late);
	case 'duplicates': return String(s.dups);
	case 'reordered': return String(s.reordered);
	case 'loss_pct': return s.lossPct.toFixed(1);
	default: {
		const key = k.replace('rtt_', '');
		return r ? String(r[key]) : '';
	}
	}
}

function wireText(w) {
	if (!w || typeof w !== 'object') return '';
	const a = t(`wire.action.${w.action}`);
	return typeof w.delay_us === 'number' && w.delay_us > 0 && w.action !== 'drop'
		? `${a} ${fmtDuration(w.delay_us)}` : a;
}


// layers.js: the view of the layers lab: the topology, each scenario's frames link by link with what changed, the kernel's neighbour states on a timeline, and any frame's layers.
//
// Everything comes from the run's events: "topology" (hosts, addresses, MACs,
// links), "frame" (one per frame per bridge port, with the kernel's capture
// time), "neigh" (a change the kernel reported), "neigh.sample" (one query's
// answer: drawn hollow, never as a transition), "route", "neigh.timers",
// "hop" (the router's two frames compared byte for byte by the lab) and the
// scenarios' findings. A frame of an IPv4 packet seen on several links is
// compared with the packet's first capture, and the fields that differ are
// marked. Positions on the timeline are CSSOM properties (strict CSP).

import { h, replace, fmtMs } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, callReturnUs, errorCallout, noteCallout, MAX_ROWS } from './common.js';
import { rawBlock } from './raw.js';

const SVG = 'http://www.w3.org/2000/svg';
const SCENARIOS = ['same-subnet', 'other-subnet', 'ttl', 'fragment', 'ageing'];
const SCENARIO_KEYS = {
	'same-subnet': () => t('layers.scenario.same'),
	'other-subnet': () => t('layers.scenario.other'),
	ttl: () => t('layers.scenario.ttl'),
	fragment: () => t('layers.scenario.frag'),
	ageing: () => t('layers.scenario.ageing'),
};

function ensureStyles() {
	if (document.querySelector('link[data-view="layers"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/layers.css', 'data-view': 'layers' } }));
}

// The form: these knobs first, the others under "more knobs".
export const formHints = { main: ['scenario', 'size', 'ttl', 'frag_size'] };

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new LayersView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

function svg(tag, attrs, text) {
	const el = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
	if (text !== undefined) el.textContent = String(text);
	return el;
}

// The key of one IPv4 packet (or fragment) across links.
function packetKey(f) {
	if (!f.ip) return null;
	return `${f.ip.src}|${f.ip.dst}|${f.ip.id}|${f.ip.frag_off}|${f.ip.proto}`;
}

const hex4 = (v) => `0x${Number(v).toString(16).padStart(4, '0')}`;

class LayersView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.topo = null;
		this.ports = [];
		this.first = new Map(); // packet key -> first frame seen
		this.frames = new Map(); // n -> frame event
		this.scen = new Map(); // scenario number -> {card, parts}
		this.neighRows = new Map(); // "host|ip" -> row
		this.tMax = 1;
		this.marks = [];
		this.starts = []; // [scenario number, t_us]
		this.selected = null;
		this.rows = 0;
		this.hidden = 0;

		this.topoEl = h('div', { class: 'ly-topo', attrs: { role: 'img', 'aria-label': t('layers.topology') } });
		this.topoCard = h('section', { class: 'card ly-topo-card' },
			h('h3', { text: t('layers.topology') }), h('p', { class: 'help', text: t('layers.topology_help') }), this.topoEl);
		this.timelineEl = h('div', { class: 'ly-timeline' });
		this.timelineCard = h('section', { class: 'card ly-timeline-card' },
			h('h3', { text: t('layers.timeline') }), h('p', { class: 'help', text: t('layers.timeline_help') }),
			h('p', { class: 'ly-legend' },
				h('span', { class: 'ly-chip ly-kernel', text: t('layers.kernel_report') }), ' ',
				h('span', { class: 'ly-chip ly-sample', text: t('layers.sample') })),
			this.timelineEl);
		this.notesEl = h('div', { class: 'ly-notes' });
		this.scenEl = h('div', { class: 'ly-scenarios' });
		this.detailEl = h('div', { class: 'ly-detail' }, h('p', { class: 'muted', text: t('layers.detail_help') }));
		this.detailCard = h('section', { class: 'card ly-detail-card' }, h('h3', { text: t('layers.detail') }), this.detailEl);
		this.otherEl = h('div', { class: 'ly-other' });
		this.otherCard = h('details', { class: 'card ly-other-card' }, h('summary', { text: t('layers.other_events') }), this.otherEl);
		this.otherCard.hidden = true;
		root.append(this.topoCard, this.notesEl, this.timelineCard, this.scenEl, this.detailCard, this.otherCard);
	}

	get status() {
		return this.frame.status;
	}

	push(events) {
		let timeline = false;
		for (const ev of events) {
			if (this.frame.take(ev)) continue;
			switch (ev.type) {
			case 'topology': this.showTopology(ev); break;
			case 'scenario': this.showScenario(ev); break;
			case 'frame': this.addFrame(ev); break;
			case 'neigh':
			case 'neigh.sample':
				this.marks.push(ev);
				timeline = true;
				this.kernelLine(ev);
				break;
			case 'route':
			case 'neigh.timers':
			case 'neigh.delete':
				this.kernelLine(ev);
				break;
			case 'hop': this.showHop(ev); break;
			case 'wire': this.wireLine(ev); break;
			case 'note': (this.cur ? this.cur.notes : this.notesEl).appendChild(noteCallout(ev)); break;
			case 'error': break;
			case 'syscall': this.syscallLine(ev); break;
			default:
				this.otherCard.hidden = false;
				this.otherEl.appendChild(rawBlock(ev));
			}
			if (typeof ev.t_us === 'number' && ev.t_us > this.tMax) this.tMax = ev.t_us;
		}
		// The axis runs to the latest event shown, so it is drawn again
		// whenever that moved: the view after N events is then the same
		// however the events were batched (live, replayed or stepped).
		if (timeline || (this.marks.length && this.tMax !== this.drawnMax)) this.drawTimeline();
		this.frame.flush();
	}

	// ---- the topology ----

	showTopology(ev) {
		this.topo = ev;
		this.ports = [];
		// Columns left to right as drawn: the hosts of segment 0, the
		// router's two sides, then the hosts of segment 1.
		for (const seg of ev.segments || []) {
			const here = [];
			for (const host of ev.hosts || []) {
				for (const i of host.ifs || []) if (i.seg === seg.seg) here.push({ port: i.port, host: host.name, seg: seg.seg, router: host.router });
			}
			here.sort((a, b) => (seg.seg === 0 ? a.router - b.router : b.router - a.router));
			this.ports.push(...here);
		}
		// Ends of segments: A, B on segment 0, the router between, C on 1.
		const s = svg('svg', { viewBox: '0 0 760 250', class: 'ly-svg', role: 'presentation' });
		const hosts = ev.hosts || [];
		const router = hosts.find((x) => x.router);
		const byseg = [0, 1].map((g) => hosts.filter((x) => !x.router && x.ifs.some((i) => i.seg === g)));
		const bus = [{ x1: 20, x2: 420 }, { x1: 580, x2: 745 }];
		this.linkEls = new Map();
		(ev.segments || []).slice(0, 2).forEach((seg, g) => {
			s.appendChild(svg('line', { x1: bus[g].x1, y1: 200, x2: bus[g].x2, y2: 200, class: 'ly-bus' }));
			s.appendChild(svg('text', g ? { x: bus[g].x2, y: 235, class: 'ly-label', 'text-anchor': 'end' } : { x: bus[g].x1 + 4, y: 235, class: 'ly-label' },
				`${seg.bridge} · ${seg.subnet}/${seg.prefix} · MTU ${seg.mtu}`));
		});
		const box = (host, x, y, w, ifs) => {
			s.appendChild(svg('rect', { x, y, width: w, height: 74, rx: 6, class: host.router ? 'ly-box ly-router' : 'ly-box' }));
			s.appendChild(svg('text', { x: x + 8, y: y + 18, class: 'ly-name' }, host.router ? t('layers.router', { name: host.name }) : host.name));
			ifs.forEach((i, k) => {
				s.appendChild(svg('text', { x: x + 8, y: y + 36 + 16 * k, class: 'ly-addr' }, `${i.if} ${i.addr}/${i.prefix}`));
			});
			if (ifs.length === 1) s.appendChild(svg('text', { x: x + 8, y: y + 68, class: 'ly-mac' }, ifs[0].mac));
		};
		// Each link's ends: host (where the host's interface is) and bus.
		this.linkGeo = new Map();
		const relayLabel = (i) => {
			if (!i.wire) return;
			const w = i.wire.sent;
			return t('layers.relay', { delay: w.delay_ms, loss: w.loss_pct });
		};
		const link = (i, x, y1, y2) => {
			const l = svg('line', { x1: x, y1, x2: x, y2, class: i.wire ? 'ly-link ly-link-relay' : 'ly-link' });
			l.dataset.port = i.port;
			s.appendChild(l);
			s.appendChild(svg('text', { x: x + 4, y: (y1 + y2) / 2 + 4, class: 'ly-port' }, i.port));
			if (i.wire) s.appendChild(svg('text', { x: x + 4, y: (y1 + y2) / 2 + 18, class: 'ly-relay' }, relayLabel(i)));
			this.linkEls.set(i.port, l);
			this.linkGeo.set(i.port, { host: [x, y1], bus: [x, y2] });
		};
		byseg[0].forEach((host, k) => {
			const x = 40 + k * 190;
			box(host, x, 20, 170, host.ifs);
			link(host.ifs[0], x + 85, 94, 200);
		});
		byseg[1].forEach((host, k) => {
			const x = 585 + k * 170;
			box(host, x, 20, 160, host.ifs);
			link(host.ifs[0], x + 80, 94, 200);
		});
		if (router) {
			box(router, 420, 120, 160, router.ifs);
			const r0 = router.ifs.find((i) => i.seg === 0);
			const r1 = router.ifs.find((i) => i.seg === 1);
			// The router's links run along its box's foot to its segment's bus.
			const rlink = (i, x1, x2) => {
				const l = svg('line', { x1, y1: 194, x2, y2: 200, class: i.wire ? 'ly-link ly-link-relay' : 'ly-link' });
				l.dataset.port = i.port;
				s.appendChild(l);
				if (i.wire) s.appendChild(svg('text', { x: x2, y: 246, class: 'ly-relay', 'text-anchor': x2 > 500 ? 'start' : 'end' }, relayLabel(i)));
				this.linkEls.set(i.port, l);
				this.linkGeo.set(i.port, { host: [x1, 194], bus: [x2, 200] });
			};
			if (r0) rlink(r0, 440, 420);
			if (r1) rlink(r1, 560, 580);
		}
		const macs = h('table', { class: 'ly-macs' },
			h('thead', {}, h('tr', {}, [t('layers.host'), t('layers.if'), t('layers.addr'), t('layers.mac'), t('layers.port'), t('layers.gateway')]
				.map((x) => h('th', { text: x })))),
			h('tbody', {}, hosts.flatMap((host) => host.ifs.map((i) => h('tr', {},
				h('td', { text: host.name }), h('td', { text: i.if }), h('td', { text: `${i.addr}/${i.prefix}` }),
				h('td', { class: 'mono', text: i.mac }), h('td', { class: 'mono', text: i.port }),
				h('td', { text: host.gateway || (host.router ? t('layers.forwards') : '—') }))))));
		this.svgEl = s;
		replace(this.topoEl, s, macs);
		this.topoEl.dataset.hosts = String(hosts.length);
	}

	// ---- scenarios ----

	current() {
		if (!this.cur) this.cur = this.makeScenario(0, '');
		return this.cur;
	}

	makeScenario(n, name) {
		const head = h('tr', {}, h('th', { class: 'num', text: '#' }), h('th', { class: 'num', text: t('layers.time') }),
			this.ports.map((p) => h('th', { class: `ly-seg${p.seg}`, text: `${p.port} (${p.host})` })));
		const body = h('tbody', {});
		const parts = {
			n,
			notes: h('div', { class: 'ly-scen-notes' }),
			kernel: h('ul', { class: 'ly-kernel-list' }),
			hop: h('div', { class: 'ly-hop' }),
			findings: h('details', { class: 'ly-findings' }, h('summary', { text: t('layers.findings') })),
			body,
			count: 0,
		};
		parts.findings.hidden = true;
		parts.card = h('section', { class: 'card ly-scen', dataset: { scenario: name, n: String(n) } },
			h('h3', { text: name && SCENARIO_KEYS[name] ? SCENARIO_KEYS[name]() : t('layers.setup') }),
			parts.notes,
			h('h4', { text: t('layers.kernel') }), parts.kernel,
			parts.hop,
			h('h4', { text: t('layers.frames') }), h('p', { class: 'help', text: t('layers.frames_help') }),
			h('div', { class: 'scroll' }, h('table', { class: 'ly-frames' }, h('thead', {}, head), body)),
			parts.findings);
		this.scenEl.appendChild(parts.card);
		this.scen.set(n, parts);
		return parts;
	}

	showScenario(ev) {
		if (ev.phase === 'start') {
			this.starts.push([ev.n, ev.t_us]);
			this.cur = this.makeScenario(ev.n, SCENARIOS.includes(ev.name) ? ev.name : '');
			return;
		}
		const s = this.scen.get(ev.n) || this.current();
		s.card.dataset.done = 'true';
		const f = ev.findings || {};
		const dl = h('dl', { class: 'ly-findings-list' });
		for (const [k, v] of Object.entries(f)) {
			if (k === 'hop') continue;
			dl.append(h('dt', { class: 'mono', text: k }), h('dd', { class: 'mono', text: typeof v === 'object' ? JSON.stringify(v) : String(v) }));
		}
		s.findings.appendChild(dl);
		s.findings.hidden = false;
	}

	kernelLine(ev) {
		const s = this.current();
		let text;
		if (ev.type === 'route') {
			text = ev.error ? t('layers.route_error', { host: ev.host, dst: ev.dst, error: ev.error })
				: ev.gateway ? t('layers.route_via', { host: ev.host, dst: ev.dst, matched: ev.matched, gw: ev.gateway, dev: ev.dev, src: ev.src })
					: t('layers.route_direct', { host: ev.host, dst: ev.dst, matched: ev.matched, dev: ev.dev, src: ev.src });
		} else if (ev.type === 'neigh') {
			text = t('layers.neigh_line', { host: ev.host, ip: ev.ip, peer: ev.peer, from: ev.from, to: ev.to });
		} else if (ev.type === 'neigh.sample') {
			text = t('layers.sample_line', { host: ev.host, ip: ev.ip, peer: ev.peer, state: ev.state, when: ev.when });
		} else if (ev.type === 'neigh.delete') {
			text = ev.ret === 0 ? t('layers.delete_line', { host: ev.host, ip: ev.ip, peer: ev.peer })
				: t('layers.delete_none', { host: ev.host, ip: ev.ip, peer: ev.peer });
		} else {
			text = t('layers.timers_line', { host: ev.host, reachable: ev.reachable_ms, base: ev.base_reachable_ms, delay: ev.delay_probe_ms, retrans: ev.retrans_ms });
		}
		s.kernel.appendChild(h('li', { class: `ly-k ly-k-${ev.type.replace('.', '-')}`, dataset: { state: ev.to || ev.state || '', seq: String(ev.seq) } },
			h('span', { class: 'num muted', text: fmtMs(ev.t_us) }), ' ', h('span', { text }), ' ',
			h('span', { class: 'ly-source', text: ev.source || '' })));
	}

	syscallLine(ev) {
		if (ev.call !== 'sendto' && ev.call !== 'recvfrom' && ev.call !== 'recvmsg') return;
		const s = this.current();
		const err = ev.icmp_error ? ` · ICMP ${ev.icmp_error.type}/${ev.icmp_error.code} ${ev.icmp_error.offender || ''}` : '';
		s.kernel.appendChild(h('li', { class: 'ly-k ly-k-call', dataset: { seq: String(ev.seq) } },
			h('span', { class: 'num muted', text: fmtMs(callReturnUs(ev)) }), ' ',
			h('span', { class: 'mono', text: `${ev.who}: ${ev.call}() = ${ev.ret}${err}` })));
	}

	// ---- frames, link by link ----

	addFrame(ev) {
		this.frames.set(ev.n, ev);
		this.showHopOn(ev.port, ev.dir === 'to_host' ? 'down' : 'up', ev.n, 'frame');
		const s = this.scen.get(ev.scenario) || this.current();
		if (this.rows >= MAX_ROWS) {
			this.hidden++;
			return;
		}
		this.rows++;
		s.count++;
		const key = packetKey(ev);
		const orig = key ? this.first.get(key) : null;
		if (key && !orig) this.first.set(key, ev);
		const changed = (a, b) => (orig && a !== b ? ' ly-changed' : '');
		const size = ev.udp ? ` ${ev.udp.len - 8} B` : ev.icmp ? ` ${ev.icmp.type}/${ev.icmp.code}` : '';
		const parts = [
			h('div', { class: 'ly-f-head' },
				h('span', { class: 'ly-dir', text: ev.dir === 'to_host' ? t('layers.to_host', { host: ev.host }) : t('layers.from_host', { host: ev.host }) }),
				' ', h('span', { text: `${ev.proto}${size}` })),
			h('div', { class: 'ly-f-macs mono' },
				h('span', { class: `ly-fld${changed(ev.eth.src, orig && orig.eth.src)}`, dataset: { field: 'eth.src' }, text: ev.eth.src }),
				' → ',
				h('span', { class: `ly-fld${changed(ev.eth.dst, orig && orig.eth.dst)}${ev.eth.dst === 'ff:ff:ff:ff:ff:ff' ? ' ly-bcast' : ''}`, dataset: { field: 'eth.dst' }, text: ev.eth.dst })),
		];
		if (ev.ip) {
			parts.push(h('div', { class: 'ly-f-ip mono', text: `${ev.ip.src} → ${ev.ip.dst}` }));
			parts.push(h('div', { class: 'ly-f-ip mono' },
				h('span', { class: `ly-fld${changed(ev.ip.ttl, orig && orig.ip.ttl)}`, dataset: { field: 'ip.ttl' }, text: `TTL ${ev.ip.ttl}` }), ' ',
				h('span', { class: `ly-fld${changed(ev.ip.checksum, orig && orig.ip.checksum)}`, dataset: { field: 'ip.checksum' }, text: `csum ${hex4(ev.ip.checksum)}` }), ' ',
				h('span', { text: `id ${ev.ip.id}` }),
				ev.ip.frag_off || ev.ip.mf ? h('span', { class: 'ly-frag', text: ` off ${ev.ip.frag_off}${ev.ip.mf ? ' MF' : ''}` }) : null));
		}
		if (ev.arp) parts.push(h('div', { class: 'ly-f-arp mono', text: ev.arp.op === 1 ? t('layers.arp_request', { tpa: ev.arp.tpa, spa: ev.arp.spa }) : t('layers.arp_reply', { spa: ev.arp.spa, sha: ev.arp.sha }) }));
		const cell = h('button', { class: `ly-frame ly-p-${ev.proto}`, attrs: { type: 'button' }, dataset: { n: String(ev.n) } }, parts);
		cell.addEventListener('click', () => this.select(ev.n));
		const cols = this.ports.map((p) => h('td', { class: `ly-seg${p.seg}` }, p.port === ev.port ? cell : null));
		s.body.appendChild(h('tr', { dataset: { n: String(ev.n), port: ev.port, dir: ev.dir } },
			h('td', { class: 'num', text: String(ev.n) }), h('td', { class: 'num', text: fmtMs(ev.t_kernel_us) }), cols));
	}

	// The frame just shown crosses its link: the link is highlighted and a
	// dot travels along it, from the host to the bus (a frame the host sent)
	// or from the bus to the host. Each step of the player adds one event, so
	// the highlight follows the step; a step back rebuilds the view up to the
	// previous event, and with it the previous frame's link. A frame the
	// relay dropped stops half-way.
	showHopOn(port, way, n, kind) {
		if (!this.linkEls || !this.svgEl) return;
		for (const [p, el] of this.linkEls) el.classList.toggle('ly-link-hop', p === port);
		if (this.hopDot) this.hopDot.remove();
		this.hopDot = null;
		const g = this.linkGeo.get(port);
		this.topoEl.dataset.hopPort = port;
		this.topoEl.dataset.hopN = String(n);
		this.topoEl.dataset.hopKind = kind;
		if (!g) return;
		const [from, to] = way === 'down' ? [g.bus, g.host] : [g.host, g.bus];
		const end = kind === 'drop' ? [(from[0] + to[0]) / 2, (from[1] + to[1]) / 2] : to;
		const dot = svg('circle', { cx: end[0], cy: end[1], r: 6, class: kind === 'drop' ? 'ly-dot ly-dot-drop' : 'ly-dot' });
		for (const [attr, a, b] of [['cx', from[0], end[0]], ['cy', from[1], end[1]]]) {
			dot.appendChild(svg('animate', { attributeName: attr, from: a, to: b, dur: '0.5s', fill: 'freeze' }));
		}
		this.svgEl.appendChild(dot);
		this.hopDot = dot;
	}

	// What a link's relay did to a frame (only frames it acted on are
	// reported): a line in the scenario, and a drop stops the hop half-way.
	wireLine(ev) {
		const s = this.current();
		if (ev.action === 'drop' || ev.action === 'queue_drop') this.showHopOn(ev.port, ev.dir === 's2c' ? 'down' : 'up', `w${ev.frame}`, 'drop');
		// A delay is every frame's on a delayed link: the link's label says it.
		if (ev.action === 'delay') return;
		s.kernel.appendChild(h('li', { class: `ly-k ly-k-wire ly-wire-${ev.action}` },
			h('span', { class: 'num muted', text: fmtMs(ev.t_us) }), ' ',
			h('span', { text: t('layers.wire_line', { port: ev.port, dir: t(ev.dir === 's2c' ? 'layers.wire_to_host' : 'layers.wire_from_host'), action: ev.action, frame: ev.frame, summary: ev.summary }) })));
	}

	showHop(ev) {
		const s = this.current();
		const show = (c, hex, v) => {
			if (v !== undefined) return `${v} (0x${hex})`;
			return c.len === 6 ? hex.match(/../g).join(':') : `0x${hex}`;
		};
		const rows = (ev.changes || []).map((c) => h('tr', { class: 'ly-changed-row', dataset: { field: c.field } },
			h('td', { text: `${c.layer} · ${c.field}` }), h('td', { class: 'num', text: `${c.off}+${c.len}` }),
			h('td', { class: 'mono', text: show(c, c.before, c.before_value) }),
			h('td', { class: 'mono', text: show(c, c.after, c.after_value) })));
		const other = (ev.other_changed_offsets || []).length;
		replace(s.hop,
			h('h4', { text: t('layers.hop', { name: ev.router }) }),
			h('p', { class: 'help', text: t('layers.hop_help') }),
			h('table', { class: 'ly-hop-table' },
				h('thead', {}, h('tr', {}, h('th', { text: t('layers.field') }), h('th', { text: t('layers.bytes_at') }),
					h('th', { text: `${ev.in_port} #${ev.in_frame}` }), h('th', { text: `${ev.out_port} #${ev.out_frame}` }))),
				h('tbody', {}, rows,
					h('tr', { class: other ? 'ly-changed-row' : '' }, h('td', { attrs: { colspan: '4' }, text: t('layers.other_bytes', { n: other }) })),
					h('tr', {}, h('td', { attrs: { colspan: '4' }, text: t('layers.checksums', { a: ev.checksum_ok_in ? '✓' : '✗', b: ev.checksum_ok_out ? '✓' : '✗' }) })))));
		s.hop.dataset.changes = String((ev.changes || []).length);
	}

	// ---- the neighbour timeline ----

	drawTimeline() {
		this.drawnMax = this.tMax;
		const span = Math.max(this.tMax, 1);
		const trackPx = Math.max((this.timelineEl.clientWidth || 1000) - 14 * 16 - 6 * 16, 200);
		const rows = new Map();
		for (const m of this.marks) {
			const key = `${m.host}|${m.ip}`;
			if (!rows.has(key)) rows.set(key, []);
			rows.get(key).push(m);
		}
		const out = [];
		for (const [key, marks] of rows) {
			const [host, ip] = key.split('|');
			const track = h('div', { class: 'ly-track' });
			// Marks close in time go on separate levels, so none hides another.
			const ends = [];
			for (const m of marks) {
				const sample = m.type === 'neigh.sample';
				const label = sample ? `? ${m.state}` : m.to;
				const left = (100 * m.t_us) / span;
				const width = (100 * (label.length * 7 + 18)) / trackPx;
				let level = ends.findIndex((e) => left >= e);
				if (level < 0) level = ends.push(0) - 1;
				ends[level] = left + width;
				const chip = h('span', {
					class: `ly-chip ${sample ? 'ly-sample' : 'ly-kernel'} ly-st-${(sample ? m.state : m.to).toLowerCase()}`,
					attrs: { title: `${fmtMs(m.t_us)} · ${sample ? m.when : `${m.from} → ${m.to}`} · ${m.source}` },
					dataset: { state: sample ? m.state : m.to, kind: sample ? 'sample' : 'kernel' },
					text: label,
				});
				chip.style.left = `${left}%`;
				chip.style.top = `${0.3 + 1.5 * level}rem`;
				track.appendChild(chip);
			}
			track.style.height = `${0.6 + 1.5 * Math.max(ends.length, 1)}rem`;
			out.push(h('div', { class: 'ly-trow', dataset: { host, ip } },
				h('div', { class: 'ly-thead', text: t('layers.entry', { host, ip, peer: marks[0].peer || '?' }) }), track));
		}
		const axis = h('div', { class: 'ly-axis' });
		for (const [n, tus] of this.starts) {
			const tick = h('span', { class: 'ly-tick', text: String(n), attrs: { title: t('layers.scenario_start', { n }) } });
			tick.style.left = `${(100 * tus) / span}%`;
			axis.appendChild(tick);
		}
		axis.appendChild(h('span', { class: 'ly-axis-end', text: fmtMs(span) }));
		out.push(axis);
		replace(this.timelineEl, out);
	}

	// ---- one frame's layers ----

	select(n) {
		const f = this.frames.get(n);
		if (!f) return;
		if (this.selected) this.selected.classList.remove('ly-on');
		this.selected = document.querySelector(`.ly-frame[data-n="${n}"]`);
		if (this.selected) this.selected.classList.add('ly-on');
		for (const [port, el] of this.linkEls || []) el.classList.toggle('ly-link-on', port === f.port);
		const bytes = [];
		for (let i = 0; i + 1 < (f.bytes || '').length; i += 2) bytes.push(f.bytes.slice(i, i + 2));
		const hexEls = bytes.map((b, i) => h('span', { class: 'ly-byte', dataset: { i: String(i) }, text: b }));
		const all = (f.layers || []).flatMap((l) => (l.fields || []).map((fl) => ({ l, fl })));
		let fieldEls = [];
		// Highlighting both ways: a field or band marks its bytes; a byte
		// marks the smallest field that holds it.
		const mark = (off, len, on) => {
			hexEls.forEach((e, i) => e.classList.toggle('ly-mark', i >= off && i < off + len));
			fieldEls.forEach((e) => e.classList.toggle('ly-on', e === on));
		};
		// The layers as nested bands: each inside the one that carries it.
		let bands = null;
		for (const l of [...(f.layers || [])].reverse()) {
			const band = h('div', { class: `ly-band ly-band-${l.layer}`, dataset: { layer: l.layer } });
			const head = h('button', { class: 'ly-band-head', attrs: { type: 'button' },
				text: t('layers.band', { layer: l.layer, off: l.off, len: l.len }) });
			head.addEventListener('click', () => mark(l.off, l.len, null));
			band.append(head);
			if (bands) band.append(bands);
			bands = band;
		}
		const fields = h('ul', { class: 'ly-fields' }, all.map(({ l, fl }) => {
			const b = h('button', { class: 'ly-field', attrs: { type: 'button' }, dataset: { off: String(fl.off), len: String(fl.len) },
				text: `${l.layer} · ${fl.name} = ${fl.text || (typeof fl.value === 'object' ? JSON.stringify(fl.value) : fl.value)} [${fl.off}+${fl.len}]` });
			b.addEventListener('click', () => mark(fl.off, fl.len, b));
			return h('li', {}, b);
		}));
		fieldEls = [...fields.querySelectorAll('.ly-field')];
		hexEls.forEach((e, i) => e.addEventListener('click', () => {
			let best = -1;
			all.forEach(({ fl }, k) => {
				if (i >= fl.off && i < fl.off + fl.len && fl.len > 0 && (best < 0 || fl.len < all[best].fl.len)) best = k;
			});
			if (best >= 0) mark(all[best].fl.off, all[best].fl.len, fieldEls[best]);
		}));
		const rowsOf16 = [];
		for (let i = 0; i < hexEls.length; i += 16) {
			rowsOf16.push(h('div', { class: 'ly-hexrow' }, h('span', { class: 'ly-hexoff', text: i.toString(16).padStart(4, '0') }),
				hexEls.slice(i, i + 16), h('span', { class: 'ly-ascii', text: bytes.slice(i, i + 16).map((x) => {
					const c = parseInt(x, 16);
					return c >= 32 && c < 127 ? String.fromCharCode(c) : '.';
				}).join('') })));
		}
		replace(this.detailEl,
			h('p', {}, h('strong', { text: `#${f.n}` }), ` ${f.port} · ${f.summary} · ${t('layers.frame_len', { len: f.len })}`),
			h('p', { class: 'help', text: t('layers.fcs') }),
			h('div', { class: 'ly-bands' }, bands), fields, h('div', { class: 'ly-hex' }, rowsOf16));
		this.detailEl.dataset.n = String(n);
	}
}

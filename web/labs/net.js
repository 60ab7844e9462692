// net.js: the lab network as the page shows it: the two hosts and their wire (from run.start), and "wire" events.
//
// Every lab with the shared network parameters states in run.start.network
// what was built: loopback, or two hosts (interface, MAC, address) joined by a
// veth pair or by socklab's relay with its impairment per direction. The
// relay reports each frame it drops, delays, duplicates or reorders as a
// "wire" event; wireCell() draws one.

import { h, fmtDuration } from '../dom.js';
import { t } from '../i18n.js';

const KNOBS = ['delay_ms', 'jitter_ms', 'loss_pct', 'dup_pct', 'reorder_pct', 'rate_kbit'];
const DIRS = ['c2s', 's2c'];

// The network parameters a lab run was given, to run another lab over the same
// wire (the seed as applied, so a random one is reproduced too).
export function sameNetworkParams(runStart) {
	const p = (runStart && runStart.params) || {};
	const out = {};
	for (const [k, v] of Object.entries(p)) {
		if (k === 'network' || k === 'wire_trace' || /^(c2s|s2c)_/.test(k)) out[k] = v;
	}
	const net = runStart && runStart.network;
	if (net && typeof net.seed === 'number') out.seed = net.seed;
	return out;
}

function impairText(o) {
	if (!o || typeof o !== 'object') return t('net.none');
	const parts = [];
	for (const k of KNOBS) {
		if (typeof o[k] === 'number' && o[k] !== 0) parts.push(t(`net.knob.${k}`, { v: o[k] }));
	}
	return parts.length ? parts.join(', ') : t('net.none');
}

function host(label, cls, hst) {
	return h('div', { class: `net-host ${cls}` },
		h('strong', { text: label }),
		h('code', { class: 'net-addr', text: hst && hst.addr ? `${hst.addr}/${hst.prefix ?? ''}` : '' }),
		h('span', { class: 'muted', text: hst ? `${hst.if || ''} ${hst.mac || ''}` : '' }));
}

// A block describing run.start.network, or null when there is none.
export function networkBlock(net) {
	if (!net || typeof net !== 'object') return null;
	if (net.kind !== 'two-hosts') {
		return h('div', { class: 'net-block', dataset: { kind: String(net.kind || '') } },
			h('p', { text: t('net.loopback', { mtu: net.mtu ?? '?' }) }));
	}
	const imp = net.impair || {};
	return h('div', { class: 'net-block', dataset: { kind: 'two-hosts', wire: String(net.wire || '') } },
		h('div', { class: 'net-topo' },
			host(t('net.client'), 'net-client', net.client),
			h('div', { class: 'net-wire' },
				h('span', { class: 'net-wire-kind', text: t(net.wire !== 'relay' ? 'net.wire_veth' : net.relay_ports === 'tap' ? 'net.wire_relay_tap' : 'net.wire_relay') }),
				h('span', { class: 'net-dir', dataset: { dir: 'c2s' }, text: `→ ${impairText(imp.c2s)}` }),
				h('span', { class: 'net-dir', dataset: { dir: 's2c' }, text: `← ${impairText(imp.s2c)}` })),
			host(t('net.server'), 'net-server', net.server)),
		h('p', { class: 'muted net-facts', text: t('net.facts', { mtu: net.mtu ?? '?', seed: net.seed ?? '?' }) }));
}

// One wire event as a compact cell: direction, action, delay and the frame.
export function wireCell(ev) {
	const dir = DIRS.includes(ev.dir) ? ev.dir : '';
	const act = String(ev.action || '');
	const bits = [h('span', { class: `wire-act wire-${act.replace(/[^a-z_]/g, '')}`, text: t(`wire.action.${act}`) })];
	if (typeof ev.delay_us === 'number' && ev.delay_us > 0) bits.push(h('span', { class: 'muted', text: ` ${fmtDuration(ev.delay_us)}` }));
	return h('div', { class: 'sc sc-event wire-cell', dataset: { dir, action: act } },
		h('span', { class: 'wire-dir', text: t(`wire.dir.${dir || 'c2s'}`) }), ' ',
		h('span', { class: 'muted', text: t('wire.frame', { n: ev.frame ?? '?' }) }), ' ',
		...bits, ' ',
		h('code', { class: 'wire-summary', text: String(ev.summary || '') }));
}

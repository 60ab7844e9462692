// bundle.js: a run as one file (export), and opening such a file again (import, validated).
//
// The file is JSON: {"format":"socklab-run","version":1,"meta":{...},"events":[...]}
// where meta is the run's metadata (id, lab, status, params, created, events)
// and events are exactly the run's events in seq order. An import checks the
// shape, the run id and lab on every event and that seq runs 0, 1, 2, ...
// without gaps, and refuses anything else with a message saying what is wrong.

import { t } from './i18n.js';

export const FORMAT = 'socklab-run';
export const VERSION = 1;
// Larger files are refused before they are read.
export const MAX_BYTES = 64 * 1024 * 1024;

// The bundle object for a run's events (meta from the events when not given).
export function makeBundle(events, meta = {}) {
	const start = events.find((e) => e && e.type === 'run.start') || events[0] || {};
	const end = [...events].reverse().find((e) => e && e.type === 'run.end');
	return {
		format: FORMAT,
		version: VERSION,
		meta: {
			id: start.run ?? null,
			lab: start.lab ?? null,
			status: end ? end.status : 'running',
			params: start.params || {},
			events: events.length,
			exported: new Date().toISOString(),
			...meta,
		},
		events,
	};
}

// Check a parsed bundle; returns {meta, events} or throws an Error whose
// message names the problem.
export function validateBundle(b) {
	const fail = (key, vars) => {
		throw new Error(t(key, vars));
	};
	if (!b || typeof b !== 'object' || Array.isArray(b)) fail('bundle.err_shape');
	if (b.format !== FORMAT) fail('bundle.err_format', { format: String(b.format) });
	if (b.version !== VERSION) fail('bundle.err_version', { version: String(b.version) });
	if (!b.meta || typeof b.meta !== 'object') fail('bundle.err_meta');
	if (!Array.isArray(b.events) || !b.events.length) fail('bundle.err_events');
	const first = b.events[0];
	if (!first || typeof first.run !== 'string' || !/^[0-9a-f]{16}$/.test(first.run)) fail('bundle.err_run');
	for (let i = 0; i < b.events.length; i++) {
		const ev = b.events[i];
		if (!ev || typeof ev !== 'object' || Array.isArray(ev)) fail('bundle.err_event', { i });
		if (ev.seq !== i) fail('bundle.err_seq', { i, seq: String(ev.seq) });
		if (ev.run !== first.run) fail('bundle.err_mixed', { i });
		if (typeof ev.type !== 'string') fail('bundle.err_event', { i });
		if (ev.lab !== first.lab) fail('bundle.err_mixed', { i });
	}
	if (first.type !== 'run.start') fail('bundle.err_start');
	return { meta: { ...b.meta, id: first.run, lab: first.lab }, events: b.events };
}

// Read and validate a File chosen by the user.
export async function importBundleFile(file) {
	if (file.size > MAX_BYTES) throw new Error(t('bundle.err_size', { max: MAX_BYTES / 1024 / 1024 }));
	const text = await file.text();
	let obj;
	try {
		obj = JSON.parse(text);
	} catch (e) {
		throw new Error(t('bundle.err_json', { reason: e.message }));
	}
	return validateBundle(obj);
}

// Download a player's run as a bundle file.
export function exportRun(player) {
	const bundle = makeBundle(player.events);
	const blob = new Blob([JSON.stringify(bundle)], { type: 'application/json' });
	const url = URL.createObjectURL(blob);
	const a = document.createElement('a');
	a.href = url;
	a.download = `socklab-${bundle.meta.lab || 'run'}-${bundle.meta.id || 'run'}.json`;
	document.body.appendChild(a);
	a.click();
	a.remove();
	setTimeout(() => URL.revokeObjectURL(url), 10000);
}

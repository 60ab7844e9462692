// steps.js: one plain sentence per event, for the step-through list and its caption (every number from the event itself).
//
// The sentence says what the event records and who recorded it (a call the
// lab made, a frame the capture saw, a state the kernel reported or the
// RFC model inferred, a sample sock_diag took); it never adds what the
// event does not hold. Event types a lab adds and this file does not know
// are named by their type and their "who", so nothing is dropped.

import { fmtMs } from './dom.js';
import { t, has } from './i18n.js';

function who(w) {
	return w && has(`step.who.${w}`) ? t(`step.who.${w}`) : String(w ?? '');
}

function dirText(d) {
	return d === 'c2s' ? t('hs.c2s') : d === 's2c' ? t('hs.s2c') : String(d ?? '');
}

function flagsText(f) {
	if (Array.isArray(f)) return f.join(', ') || t('hs.no_flags');
	return String(f ?? '');
}

// A note's text in the current language (the lab's English otherwise), first sentence only.
function noteText(ev) {
	const key = `note.${ev.key}`;
	const text = ev.key && has(key) ? t(key, ev.params || {}) : ev.text || ev.key || '';
	const m = /^(.+?[.。!?！？])(\s|$)/.exec(text);
	return m ? m[1] : text;
}

// The sentence for one event.
export function sentence(ev) {
	if (!ev || typeof ev !== 'object') return '';
	switch (ev.type) {
	case 'run.start':
		return t('step.run_start', { lab: ev.lab || '' });
	case 'run.end':
		return t('step.run_end', { status: has(`run.status.${ev.status}`) ? t(`run.status.${ev.status}`) : String(ev.status ?? '') });
	case 'syscall': {
		const v = { who: who(ev.who), call: ev.call || '?', ret: ev.ret, errno: ev.errno_name || ev.errno || '', bytes: ev.bytes };
		if (ev.ret === -1) return t('step.call_failed', v);
		if (typeof ev.bytes === 'number' && /^(send|recv|read|write|sendto|recvfrom|sendmsg|recvmsg)/.test(ev.call || '')) {
			return t(ev.eof ? 'step.call_eof' : 'step.call_bytes', v);
		}
		return t('step.call', v);
	}
	case 'segment':
		if (Array.isArray(ev.flags)) {
			return t('step.segment', { n: ev.n ?? ev.i ?? '?', dir: dirText(ev.dir), flags: flagsText(ev.flags), len: ev.len ?? 0 });
		}
		return t('step.segment', { n: ev.i ?? ev.n ?? '?', dir: dirText(ev.dir), flags: flagsText(ev.flags), len: ev.bytes ?? ev.len ?? 0 });
	case 'arrival':
		return t('step.arrival', { n: ev.n, who: who(ev.who), ms: fmtMs(ev.wire_us) });
	case 'state':
		if (ev.source === 'rfc-model') return t('step.state_model', { who: who(ev.who), from: ev.from, to: ev.to, why: ev.why || '' });
		return t('step.state', { who: who(ev.who), from: ev.from, to: ev.to, source: ev.source || '' });
	case 'observation':
		if (ev.listed === false) return t('step.gone', { who: who(ev.who), source: ev.source || '' });
		return t('step.seen', { who: who(ev.who), state: ev.state || '?', source: ev.source || '' });
	case 'timer':
		if (ev.stopped) return t('step.timer_stopped', { who: who(ev.who), timer: ev.timer || '' });
		return t('step.timer', { who: who(ev.who), timer: ev.timer || '', s: typeof ev.ms_left === 'number' ? (ev.ms_left / 1000).toFixed(1) : '?' });
	case 'wire':
		return t('step.wire', { action: ev.action || '', dir: dirText(ev.dir), frame: ev.frame ?? '?', summary: ev.summary || ev.proto || '' });
	case 'send':
	case 'recv':
		return t(`step.${ev.type}`, { i: ev.i ?? '?', bytes: ev.bytes ?? 0, offset: ev.offset ?? 0 });
	case 'capture':
		return t('step.capture', { iface: ev.interface || '?' });
	case 'note':
		return noteText(ev);
	case 'error':
		return t('step.error', { code: ev.code || '?', message: ev.message || '' });
	default:
		return ev.who ? `${ev.type} (${who(ev.who)})` : String(ev.type ?? '?');
	}
}

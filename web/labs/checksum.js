// checksum.js: a checksum field's verdict for the field tree (good, bad, not computed, cannot be checked) with one line saying why.
//
// The decoder (labs/decode) puts {status, reason, source, value, expected?,
// why} under a checksum field's "check". This module turns it into a badge
// and one sentence in the reader's language. An unknown status or reason is
// shown as the event says it (its English "why"), never dropped.

import { h } from '../dom.js';
import { t } from '../i18n.js';

const hex = (v) => (typeof v === 'number' ? `0x${v.toString(16).padStart(4, '0')}` : '—');

const STATUS = {
	good: () => t('csum.status.good'),
	bad: () => t('csum.status.bad'),
	not_computed: () => t('csum.status.not_computed'),
	unverifiable: () => t('csum.status.unverifiable'),
	none: () => t('csum.status.none'),
};

const WHY = {
	match: (v) => t('csum.why.match', v),
	mismatch: (v) => t('csum.why.mismatch', v),
	udp6_zero: (v) => t('csum.why.udp6_zero', v),
	offload: (v) => t('csum.why.offload', v),
	offload_inferred: (v) => t('csum.why.offload_inferred', v),
	truncated: (v) => t('csum.why.truncated', v),
	fragment: (v) => t('csum.why.fragment', v),
	routing: (v) => t('csum.why.routing', v),
	malformed: (v) => t('csum.why.malformed', v),
	udp_zero: (v) => t('csum.why.udp_zero', v),
};

// The badge's text and the explanation for one "check" object.
export function checksumText(check) {
	const vars = { value: hex(check.value), expected: hex(check.expected) };
	const status = Object.hasOwn(STATUS, check.status) ? STATUS[check.status]() : String(check.status);
	const why = Object.hasOwn(WHY, check.reason) ? WHY[check.reason](vars) : String(check.why || '');
	return { status, why };
}

// [badge, explanation] elements to put after the checksum field's line.
export function checksumVerdict(check) {
	if (!check || typeof check !== 'object') return [];
	const { status, why } = checksumText(check);
	const cls = /^[a-z_]+$/.test(String(check.status)) ? check.status : 'other';
	return [
		h('span', { class: `csum-badge csum-${cls}`, dataset: { status: String(check.status), source: String(check.source || '') }, text: status }),
		h('div', { class: 'csum-why', text: why }),
	];
}

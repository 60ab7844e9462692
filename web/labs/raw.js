// raw.js: the fallback renderer: every event as a row of raw JSON, for labs without their own view.
//
// Lab renderers also use rawBlock() for event types they do not know, so no
// event is ever dropped from a view.

import { h, fmtMs } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, MAX_ROWS } from './common.js';

// The event as compact JSON text, without the envelope fields every event has.
export function rawText(ev) {
	const { v, run, seq, t_us, lab, ...rest } = ev;
	return JSON.stringify(rest);
}

// A block showing one event as raw JSON.
export function rawBlock(ev) {
	return h('div', { class: 'raw' },
		h('span', { class: 'raw-type', text: String(ev.type ?? t('raw.unknown')) }),
		h('code', { class: 'raw-json', text: rawText(ev) }));
}

export function create(root, ctx) {
	const frame = new RunFrame(root, ctx);
	const body = h('tbody');
	const more = h('p', { class: 'muted' });
	more.hidden = true;
	let rows = 0;
	let hidden = 0;
	root.appendChild(h('section', { class: 'card' },
		h('h3', { text: t('raw.heading') }),
		h('div', { class: 'scroll' },
			h('table', { class: 'trace raw-table' },
				h('thead', {}, h('tr', {},
					h('th', { class: 'c-seq', attrs: { scope: 'col' }, text: '#' }),
					h('th', { class: 'c-time', attrs: { scope: 'col' }, text: t('echo.col.time') }),
					h('th', { attrs: { scope: 'col' }, text: t('raw.unknown') }))),
				body)),
		more));
	frame.attachSummary(root);

	return {
		push(events) {
			const frag = document.createDocumentFragment();
			for (const ev of events) {
				frame.take(ev);
				if (rows >= MAX_ROWS) {
					hidden++;
					continue;
				}
				rows++;
				frag.appendChild(h('tr', {},
					h('td', { class: 'c-seq', text: ev.seq ?? '' }),
					h('td', { class: 'c-time', text: fmtMs(ev.t_us) }),
					h('td', {}, rawBlock(ev))));
			}
			body.appendChild(frag);
			if (hidden) {
				more.textContent = t('run.truncated', { n: hidden });
				more.hidden = false;
			}
			frame.flush();
		},
		get status() {
			return frame.status;
		},
	};
}

// raw.js: the fallback renderer: every event as a row of raw JSON, for labs without their own view.
//
// Lab renderers also use rawBlock() for event types they do not know, so no
// event is ever dropped from a view.

import { h, fmtMs } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, MAX_ROWS, LONG_ROWS } from './common.js';

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
	const body = h('div', { class: 'trace-body', attrs: { role: 'rowgroup' } });
	const more = h('p', { class: 'muted' });
	more.hidden = true;
	let rows = 0;
	let hidden = 0;
	const cell = (cls, kids) => h('div', { class: `tcell ${cls}`, attrs: { role: 'cell' } }, kids);
	const table = h('div', { class: 'trace raw-trace', attrs: { role: 'table', 'aria-label': t('raw.heading') } },
		h('div', { class: 'trace-head', attrs: { role: 'rowgroup' } }, h('div', { class: 'trow', attrs: { role: 'row' } },
			h('div', { class: 'tcell c-seq', attrs: { role: 'columnheader' }, text: '#' }),
			h('div', { class: 'tcell c-time', attrs: { role: 'columnheader' }, text: t('echo.col.time') }),
			h('div', { class: 'tcell', attrs: { role: 'columnheader' }, text: t('raw.unknown') }))),
		body);
	root.appendChild(h('section', { class: 'card' },
		h('h3', { text: t('raw.heading') }),
		h('div', { class: 'scroll trace-scroll', attrs: { tabindex: '0', 'aria-label': t('raw.heading') } }, table),
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
				frag.appendChild(h('div', { class: 'trow', attrs: { role: 'row' }, dataset: { seq: ev.seq ?? '' } },
					cell('c-seq', String(ev.seq ?? '')),
					cell('c-time', fmtMs(ev.t_us)),
					cell('c-raw', rawBlock(ev))));
			}
			body.appendChild(frag);
			table.classList.toggle('long', rows > LONG_ROWS);
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

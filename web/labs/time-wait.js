// time-wait.js: the view of the time-wait lab: each host's TIME_WAIT sockets with the kernel's time left (sock_diag samples), the observer's timer for the watched sockets, and every call with its errno.
//
// The table shows the last sock_diag sample of each host, never an
// extrapolation: the time left is what the kernel reported in that dump. A
// bar's width is that time over 60 s, with CSSOM (strict CSP: no style
// attributes).

import { h, replace, fmtDuration } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout } from './common.js';

const HOSTS = ['client', 'server'];
const HOST_TITLE = { client: 'tw.host.client', server: 'tw.host.server' };

function ensureStyles() {
	if (document.querySelector('link[data-view="time-wait"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/time-wait.css', 'data-view': 'time-wait' } }));
}

export function create(root, ctx) {
	ensureStyles();
	const frame = new RunFrame(root, ctx);
	const view = new TimeWaitView(root, ctx, frame);
	frame.attachSummary(root);
	return view;
}

class TimeWaitView {
	constructor(root, ctx, frame) {
		this.ctx = ctx;
		this.frame = frame;
		this.lists = {};
		this.tables = {};
		this.when = {};
		const hostCards = HOSTS.map((host) => {
			const body = h('tbody');
			const when = h('p', { class: 'tw-source' });
			this.tables[host] = body;
			this.when[host] = when;
			return h('section', { class: 'card tw-host', dataset: { host } },
				h('h3', { text: t(HOST_TITLE[host]) }), when,
				h('table', { class: 'tw-table' },
					h('thead', {}, h('tr', {},
						h('th', { text: t('tw.col.local') }), h('th', { text: t('tw.col.remote') }),
						h('th', { text: t('tw.col.left') }), h('th', { text: '' }))),
					body));
		});
		this.timerEl = h('p', { class: 'tw-timer' });
		this.calls = h('ol', { class: 'tw-calls' });
		this.notesEl = h('div', { class: 'tw-notes' });
		root.appendChild(h('section', { class: 'card tw-card' },
			h('h3', { text: t('tw.sockets') }),
			h('p', { class: 'help', text: t('tw.sockets_help') }),
			this.timerEl));
		root.appendChild(h('div', { class: 'tw-hosts' }, hostCards));
		root.appendChild(h('section', { class: 'card' }, h('h3', { text: t('tw.calls') }),
			h('p', { class: 'tw-source', text: t('tw.calls_help') }), this.calls));
		root.appendChild(h('section', { class: 'card' }, h('h3', { text: t('sf.explain') }), this.notesEl));
		for (const host of HOSTS) this.drawHost(host, null);
	}

	push(events) {
		for (const ev of events) {
			if (this.frame.take(ev)) continue;
			switch (ev.type) {
			case 'tw_list':
				this.drawHost(ev.host, ev);
				break;
			case 'timer':
				this.timerEl.textContent = ev.stopped
					? t('tw.timer_stopped', { who: ev.who, reason: ev.reason || '?' })
					: t('tw.timer', { who: ev.who, state: ev.state, left: fmtDuration((ev.ms_left || 0) * 1000) });
				this.timerEl.dataset.msLeft = String(ev.ms_left ?? '');
				break;
			case 'call':
				this.addCall(ev);
				break;
			case 'note':
				this.notesEl.appendChild(noteCallout(ev));
				break;
			case 'error':
				this.notesEl.appendChild(errorCallout(ev));
				break;
			default:
				break;
			}
		}
		this.frame.flush();
	}

	drawHost(host, ev) {
		const body = this.tables[host];
		if (!body) return;
		const socks = ev && Array.isArray(ev.sockets) ? ev.sockets : [];
		this.when[host].textContent = ev
			? t('tw.sampled', { at: fmtDuration(ev.t_kernel_us), n: ev.count })
			: t('tw.not_sampled');
		if (!socks.length) {
			replace(body, h('tr', {}, h('td', { class: 'tw-empty', attrs: { colspan: '4' }, text: t('tw.none') })));
			return;
		}
		replace(body, socks.map((x) => {
			const fill = h('span', { class: 'tw-fill' });
			fill.style.width = `${Math.max(0, Math.min(100, (x.ms_left / 60000) * 100)).toFixed(1)}%`;
			return h('tr', { dataset: { sport: String(x.sport), msLeft: String(x.ms_left) } },
				h('td', { text: `${x.src}:${x.sport}` }), h('td', { text: `${x.dst}:${x.dport}` }),
				h('td', { class: 'tw-left', text: `${(x.ms_left / 1000).toFixed(1)} s` }),
				h('td', {}, h('span', { class: 'tw-bar' }, fill)));
		}));
	}

	addCall(ev) {
		const res = ev.ok ? t('tw.ok') : ev.errno;
		this.calls.appendChild(h('li', { class: ev.ok ? 'tw-ok' : 'tw-fail', dataset: { call: ev.call, errno: ev.errno || '' } },
			`${fmtDuration(ev.t_call_us)}  ${ev.who}  ${ev.call}(${ev.detail || ''}) = ${res}`));
	}
}

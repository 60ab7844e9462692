// time-wait.js: the view of the time-wait lab: each host's TIME_WAIT sockets with the kernel's time left (sock_diag samples), the observer's timer for the watched sockets, every call with its errno, and (scenario ports) the ephemeral range, port 0's port and the SO_REUSEPORT listeners' accepts.
//
// The table shows the last sock_diag sample of each host, never an
// extrapolation: the time left is what the kernel reported in that dump. A
// bar's width is that time over 60 s, with CSSOM (strict CSP: no style
// attributes).
//
// The ports card is drawn from the calls alone: the range from the
// port_range event (read in the server's namespace), port 0's port from
// getsockname(), and each listener's row from its own accept() calls.

import { h, replace, fmtDuration } from '../dom.js';
import { t } from '../i18n.js';
import { RunFrame, errorCallout, noteCallout } from './common.js';

const HOSTS = ['client', 'server'];
const HOST_TITLE = { client: 'tw.host.client', server: 'tw.host.server' };

function ensureStyles() {
	if (document.querySelector('link[data-view="time-wait"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/labs/time-wait.css', 'data-view': 'time-wait' } }));
}

// The form: these knobs first, the others under "more knobs".
export const formHints = { main: ['scenario', 'closer', 'reuseaddr', 'tw_reuse', 'conns', 'network'] };

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
		this.ports = { low: null, high: null, port0: null, shared: null, listeners: [[], []] };
		this.rangeEl = h('p', { class: 'tw-range-text' });
		this.port0El = h('p', { class: 'tw-port0' });
		this.markEl = h('span', { class: 'tw-range-mark' });
		this.sharedEl = h('h4', { class: 'tw-shared' });
		this.listenersEl = h('tbody');
		this.portsCard = h('section', { class: 'card tw-ports' },
			h('h3', { text: t('tw.ports') }),
			h('p', { class: 'help', text: t('tw.ports_help') }),
			this.rangeEl, h('div', { class: 'tw-range-bar' }, this.markEl), this.port0El,
			this.sharedEl,
			h('table', { class: 'tw-table tw-listeners' },
				h('thead', {}, h('tr', {},
					h('th', { text: t('tw.ports.col.listener') }), h('th', { text: t('tw.ports.col.accepted') }),
					h('th', { text: '' }), h('th', { text: t('tw.ports.col.peers') }))),
				this.listenersEl));
		this.portsCard.hidden = true;
		root.appendChild(this.portsCard);
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
					? t('tw.timer_stopped', { who: ev.who, who_key: `role.${ev.who}`, reason: ev.reason || '?' })
					: t('tw.timer', { who: ev.who, who_key: `role.${ev.who}`, state: ev.state, left: fmtDuration((ev.ms_left || 0) * 1000) });
				this.timerEl.dataset.msLeft = String(ev.ms_left ?? '');
				break;
			case 'call':
				this.addCall(ev);
				if (ev.step) this.portsCall(ev);
				break;
			case 'port_range':
				this.ports.low = ev.low;
				this.ports.high = ev.high;
				this.drawPorts();
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
		const who = ev.listener ? t('tw.ports.listener', { n: ev.listener }) : t(`role.${ev.who}`);
		this.calls.appendChild(h('li', { class: ev.ok ? 'tw-ok' : 'tw-fail', dataset: { call: ev.call, errno: ev.errno || '', listener: String(ev.listener || '') } },
			`${fmtDuration(ev.t_call_us)}  ${who}  ${ev.call}(${ev.detail || ''}) = ${res}`));
	}

	// The ports scenario's calls: port 0's port, the shared port, each accept.
	portsCall(ev) {
		const p = this.ports;
		if (ev.step === 'port0' && ev.call === 'getsockname' && ev.ok) p.port0 = ev.port;
		else if (ev.step === 'reuseport' && ev.call === 'bind' && ev.ok) p.shared = ev.port;
		else if (ev.step === 'reuseport' && ev.call === 'accept' && ev.ok && (ev.listener === 1 || ev.listener === 2)) {
			p.listeners[ev.listener - 1].push(ev.peer_port);
		} else return;
		this.drawPorts();
	}

	drawPorts() {
		const p = this.ports;
		this.portsCard.hidden = false;
		this.rangeEl.textContent = p.low === null ? '' : t('tw.ports.range', { low: p.low, high: p.high });
		this.port0El.textContent = p.port0 === null ? t('tw.ports.no_port0') : t('tw.ports.port0', { port: p.port0 });
		this.port0El.dataset.port = p.port0 === null ? '' : String(p.port0);
		const inRange = p.port0 !== null && p.low !== null && p.port0 >= p.low && p.port0 <= p.high;
		this.markEl.hidden = !inRange;
		if (inRange) this.markEl.style.left = `${(((p.port0 - p.low) / Math.max(1, p.high - p.low)) * 100).toFixed(1)}%`;
		this.sharedEl.textContent = p.shared === null ? '' : t('tw.ports.listeners', { port: p.shared });
		const total = p.listeners[0].length + p.listeners[1].length;
		replace(this.listenersEl, p.listeners.map((peers, i) => {
			const fill = h('span', { class: 'tw-fill tw-fill-l' });
			fill.style.width = `${total ? ((peers.length / total) * 100).toFixed(1) : 0}%`;
			return h('tr', { dataset: { listener: String(i + 1), accepted: String(peers.length) } },
				h('td', { text: t('tw.ports.listener', { n: i + 1 }) }),
				h('td', { class: 'tw-left', text: String(peers.length) }),
				h('td', {}, h('span', { class: 'tw-bar' }, fill)),
				h('td', { class: 'tw-peers', text: peers.join(', ') }));
		}));
	}
}

// syscall.js: one "syscall" event drawn as a trace cell (call, arguments, result, data).
//
// Shared by every lab renderer that shows socket calls. The cell says what the
// program called and what the kernel answered, in the spirit of strace:
//   recv(fd 5, len 1024) = 6      "hello\n"  6 B
// with failures (ret -1, errno name and message) and end of file highlighted.

import { h, fmtAddr, fmtDuration, fmtValue } from '../dom.js';
import { t, has } from '../i18n.js';

// Arguments worth showing, per call, as short text pieces.
function argPieces(ev) {
	const a = ev.args && typeof ev.args === 'object' ? ev.args : {};
	const fd = ev.fd !== undefined && ev.fd >= 0 ? `fd ${ev.fd}` : null;
	const pieces = [];
	switch (ev.call) {
	case 'socket':
		if (a.domain) pieces.push(a.domain);
		if (a.type) pieces.push(a.type);
		return pieces;
	case 'setsockopt':
		if (fd) pieces.push(fd);
		if (a.level) pieces.push(a.level);
		if (a.name !== undefined) pieces.push(`${a.name}=${fmtValue(a.value)}`);
		return pieces;
	case 'bind':
	case 'connect':
		if (fd) pieces.push(fd);
		if (a.addr !== undefined) pieces.push(fmtAddr(a));
		return pieces;
	case 'listen':
		if (fd) pieces.push(fd);
		if (a.backlog !== undefined) pieces.push(`backlog ${a.backlog}`);
		return pieces;
	case 'send':
	case 'recv':
		if (fd) pieces.push(fd);
		if (a.len !== undefined) pieces.push(`len ${a.len}`);
		if (a.flags !== undefined && a.flags !== '0' && a.flags !== 0) pieces.push(`flags ${a.flags}`);
		return pieces;
	case 'sendto':
		if (fd) pieces.push(fd);
		if (a.len !== undefined) pieces.push(`len ${a.len}`);
		if (a.to && typeof a.to === 'object') pieces.push(`to ${fmtAddr(a.to)}`);
		return pieces;
	case 'recvfrom':
		if (fd) pieces.push(fd);
		if (a.len !== undefined) pieces.push(`len ${a.len}`);
		return pieces;
	case 'shutdown':
		if (fd) pieces.push(fd);
		if (a.how) pieces.push(a.how);
		return pieces;
	case 'accept':
	case 'close':
		if (fd) pieces.push(fd);
		return pieces;
	default:
		if (fd) pieces.push(fd);
		for (const [k, v] of Object.entries(a)) pieces.push(`${k}=${fmtValue(v)}`);
		return pieces;
	}
}

// True when the call failed (ret -1 or an errno).
export function failed(ev) {
	return ev.ret === -1 || (typeof ev.errno === 'number' && ev.errno !== 0);
}

// True for a recv that returned 0: the peer closed its side.
export function isEof(ev) {
	return ev.call === 'recv' && (ev.eof === true || (ev.ret === 0 && !failed(ev)));
}

// The peer of a side, for messages such as "the client reset the connection".
function errnoExplain(ev) {
	const name = ev.errno_name;
	if (!name) return null;
	const k1 = `errno.${name}.${ev.who}`;
	if (has(k1)) return t(k1);
	const k2 = `errno.${name}`;
	return has(k2) ? t(k2) : null;
}

// The cell content for one syscall event: a DOM node.
export function syscallCell(ev) {
	const bad = failed(ev);
	const eof = isEof(ev);
	const cls = ['sc'];
	if (bad) cls.push('sc-failed');
	if (eof) cls.push('sc-eof');
	cls.push(`sc-${String(ev.call || 'unknown').replace(/[^a-z_]/g, '')}`);

	const conn = typeof ev.conn === 'number' && ev.conn > 0
		? h('span', { class: 'conn-tag', text: `#${ev.conn}`, attrs: { title: t('echo.conn', { n: ev.conn }) } })
		: null;
	const ret = bad
		? h('span', { class: 'ret ret-bad' }, ' = -1 ', h('strong', { text: ev.errno_name || `errno ${ev.errno}` }))
		: h('span', { class: 'ret' }, ` = ${fmtValue(ev.ret)}`);
	const line = h('div', { class: 'sc-line' },
		conn,
		h('span', { class: 'fn', text: ev.call || '?' }),
		h('span', { class: 'args', text: `(${argPieces(ev).join(', ')})` }),
		ret);

	const details = [];
	if (bad) {
		const why = errnoExplain(ev);
		details.push(h('div', { class: 'sc-err' },
			ev.error ? `${ev.error}` : t('echo.failed'),
			why ? h('span', { class: 'why', text: ` — ${why}` }) : null));
	}
	if (eof) {
		const key = ev.who === 'server' ? 'echo.eof_server' : ev.who === 'client' ? 'echo.eof_client' : 'echo.eof';
		details.push(h('div', { class: 'sc-eofmsg', text: t(key) }));
	}
	if (!bad && ['send', 'recv', 'sendto', 'recvfrom'].includes(ev.call) && typeof ev.data === 'string') {
		details.push(h('div', { class: 'sc-data' },
			h('code', { class: 'data', text: `"${ev.data}"` }),
			h('span', { class: 'bytes', text: t('echo.bytes', { n: ev.bytes ?? ev.ret }) }),
			ev.data_truncated ? h('span', { class: 'muted', text: t('echo.truncated_data') }) : null));
	}
	const facts = [];
	if (!bad && ev.local && (ev.call === 'bind' || ev.call === 'connect')) {
		facts.push(ev.call === 'bind' ? t('echo.bound_to', { addr: fmtAddr(ev.local) })
			: t('echo.from', { addr: fmtAddr(ev.local) }));
	}
	if (!bad && ev.peer && ev.call === 'accept') facts.push(t('echo.from', { addr: fmtAddr(ev.peer) }));
	if (!bad && ev.from && ev.call === 'recvfrom') facts.push(t('echo.from', { addr: fmtAddr(ev.from) }));
	if (!bad && typeof ev.truncated === 'number') facts.push(t('echo.dgram_truncated', { n: ev.truncated }));
	if (typeof ev.blocked_us === 'number' && ev.blocked_us > 1000) {
		facts.push(t('echo.blocked', { t: fmtDuration(ev.blocked_us) }));
	}
	if (facts.length) details.push(h('div', { class: 'sc-facts', text: facts.join(' · ') }));

	return h('div', { class: cls.join(' ') }, line, details);
}

// api.js: the server's REST API and the live WebSocket (subprotocol socklab.v1).

export async function getJSON(path) {
	const r = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
	if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
	return r.json();
}

// The events of a finished run, parsed from its JSON Lines file. A line that
// is not JSON is kept as {type: 'invalid-line', line} so nothing is dropped.
export async function getRunEvents(id) {
	const path = `/api/runs/${encodeURIComponent(id)}/events`;
	const r = await fetch(path, { cache: 'no-store' });
	if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
	const text = await r.text();
	const out = [];
	for (const line of text.split('\n')) {
		if (!line.trim()) continue;
		try {
			out.push(JSON.parse(line));
		} catch {
			out.push({ type: 'invalid-line', line });
		}
	}
	return out;
}

export function eventsURL(id) {
	return `/api/runs/${encodeURIComponent(id)}/events`;
}

// The WebSocket address from /api/config: ws_url when the server names one;
// else, when the server serves it on its one public port (ws_same_port), the
// page's own origin (ws: or wss:, host and port: through any proxy) at
// ws_path; else (--ws-port) the page's host name with that port.
export function wsURL(config) {
	if (config.ws_url) return config.ws_url;
	const path = config.ws_path || '/';
	if (config.ws_same_port) {
		const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
		return `${scheme}//${location.host}${path}`;
	}
	const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
	return `ws://${host}:${config.ws_port}${path}`;
}

// A WebSocket that reconnects by itself (1 s, 2 s, ... up to 15 s apart).
// onMessage gets each parsed JSON message; onState gets 'connecting', 'open'
// or 'closed' (with the seconds until the next attempt).
export class LiveSocket {
	constructor(url, protocol, { onMessage, onState }) {
		this.url = url;
		this.protocol = protocol;
		this.onMessage = onMessage;
		this.onState = onState;
		this.ws = null;
		this.delay = 1;
		this.timer = null;
		this.connect();
	}

	connect() {
		this.onState('connecting');
		let ws;
		try {
			ws = new WebSocket(this.url, this.protocol);
		} catch (e) {
			this.retry();
			return;
		}
		this.ws = ws;
		ws.addEventListener('open', () => {
			this.delay = 1;
			this.onState('open');
		});
		ws.addEventListener('message', (m) => {
			if (typeof m.data !== 'string') return;
			let msg;
			try {
				msg = JSON.parse(m.data);
			} catch {
				msg = { type: 'invalid-message', line: m.data };
			}
			// One event per message is the protocol; an array of events in
			// one message (a batching server) is taken as well.
			if (Array.isArray(msg)) for (const one of msg) this.onMessage(one);
			else this.onMessage(msg);
		});
		ws.addEventListener('close', () => {
			if (this.ws === ws) this.retry();
		});
	}

	retry() {
		this.ws = null;
		const s = this.delay;
		this.delay = Math.min(this.delay * 2, 15);
		this.onState('closed', s);
		clearTimeout(this.timer);
		this.timer = setTimeout(() => this.connect(), s * 1000);
	}

	get open() {
		return !!this.ws && this.ws.readyState === WebSocket.OPEN;
	}

	// Send one op; false when the socket is not open.
	send(obj) {
		if (!this.open) return false;
		this.ws.send(JSON.stringify(obj));
		return true;
	}
}

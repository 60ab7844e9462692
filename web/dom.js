// dom.js: small helpers that build elements safely (text only through textContent).

// h('div', {class: 'a b', text: 'x', attrs: {role: 'row'}, on: {click: fn}}, child...)
// Children may be nodes, strings (added as text) or null/false (skipped).
// There is deliberately no way to set innerHTML: network data is always text.
export function h(tag, props, ...children) {
	const el = document.createElement(tag);
	if (props) {
		if (props.class) el.className = props.class;
		if (props.text !== undefined && props.text !== null) el.textContent = String(props.text);
		if (props.attrs) {
			for (const [k, v] of Object.entries(props.attrs)) {
				if (v === false || v === null || v === undefined) continue;
				el.setAttribute(k, v === true ? '' : String(v));
			}
		}
		if (props.dataset) Object.assign(el.dataset, props.dataset);
		if (props.on) {
			for (const [k, fn] of Object.entries(props.on)) el.addEventListener(k, fn);
		}
	}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c === null || c === undefined || c === false) continue;
		if (Array.isArray(c)) append(el, c);
		else if (c instanceof Node) el.appendChild(c);
		else el.appendChild(document.createTextNode(String(c)));
	}
}

// Remove every child of el.
export function clear(el) {
	while (el.firstChild) el.removeChild(el.firstChild);
	return el;
}

// Replace el's children with the given ones.
export function replace(el, ...children) {
	clear(el);
	append(el, children);
	return el;
}

// Milliseconds with three decimals from microseconds ("12.345").
export function fmtMs(us) {
	if (typeof us !== 'number' || !Number.isFinite(us)) return '';
	return (us / 1000).toFixed(3);
}

// A duration for people: "850 µs", "12.3 ms", "2.50 s".
export function fmtDuration(us) {
	if (typeof us !== 'number' || !Number.isFinite(us)) return '';
	if (us < 1000) return `${Math.round(us)} µs`;
	if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
	return `${(us / 1e6).toFixed(2)} s`;
}

// "127.0.0.1:5000" or "[::1]:5000" from {addr, port}.
export function fmtAddr(a) {
	if (!a || typeof a !== 'object') return '';
	const addr = String(a.addr ?? '');
	const host = addr.includes(':') ? `[${addr}]` : addr;
	return a.port === undefined ? host : `${host}:${a.port}`;
}

// A JSON value shown compactly as text (for parameters, summaries, raw events).
export function fmtValue(v) {
	if (v === null || v === undefined) return '—';
	if (typeof v === 'string') return v;
	if (typeof v === 'number' || typeof v === 'boolean') return String(v);
	return JSON.stringify(v);
}

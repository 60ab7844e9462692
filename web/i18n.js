// i18n.js: every string the dashboard shows, one table per language, and t() to look them up.
//
// Keys are stable names; values may hold {placeholders} filled from t()'s second
// argument. Optional keys a translation may add: "note.KEY" (a lab's note,
// filled from its params; English shows the lab's own text), "summary.NAME"
// and "metric.NAME" (labels; English shows the name with spaces). A later translation adds a table (for example zh-CN) with the same
// keys; a key missing from it falls back to English, and a key missing from
// English is shown as the key itself so the gap is visible, not silent.

export const en = {
	'app.title': 'socklab',
	'app.tagline': 'an interactive TCP/IP lab',
	'app.skip': 'Skip to the lab',
	'app.loading': 'Loading…',
	'app.load_failed': 'Could not load {what} from the server: {reason}',
	'app.version': 'version {version}',

	'conn.connecting': 'Connecting…',
	'conn.open': 'Live',
	'conn.closed': 'Disconnected, retrying in {s} s',
	'conn.not_open': 'The live connection to the server is not open yet; try again in a moment.',
	'conn.title': 'Live connection to the server (WebSocket)',

	'catalogue.heading': 'Labs',
	'catalogue.empty': 'The server has no labs.',

	'runs.heading': 'Recent runs',
	'runs.refresh': 'Refresh',
	'runs.empty': 'No runs yet.',
	'runs.open': 'Open run {id}',
	'runs.events': '{n} events',

	'form.heading': 'Parameters',
	'form.advanced': 'Advanced',
	'form.run': 'Run',
	'form.cancel': 'Cancel',
	'form.reset': 'Defaults',
	'form.byo': 'Let me connect my own client',
	'form.byo_help': 'The server listens and waits for your program (nc, Python, your own code) instead of running its own client.',
	'form.default': 'default {value}',
	'form.range': '{min} to {max}',
	'form.len': 'up to {max} bytes',
	'form.fix_errors': 'Please fix the highlighted field.',
	'form.err_required': '{field}: enter a value.',
	'form.err_integer': '{field}: enter a whole number.',
	'form.err_range': '{field}: must be between {min} and {max} (you entered {value}).',
	'form.err_choice': '{field}: choose one of {choices}.',
	'form.err_len': '{field}: must be {min} to {max} bytes long (this is {len}).',
	'form.err_server': '{field}: {message}',
	'form.no_params': 'This lab has no parameters.',

	'status.idle': 'Ready.',
	'status.starting': 'Starting…',
	'status.running': 'Running…',
	'status.finished': 'Finished: {status}.',
	'status.lost': 'The connection to the server was lost before the run started; press Run again.',
	'status.cancelling': 'Cancelling…',
	'status.rejected': 'The server refused the run: {message}',
	'status.rejected_field': 'The server refused the run: see the highlighted field.',
	'status.loading_run': 'Loading run {id}…',
	'status.replaying': 'Showing run {id}.',

	'run.status.running': 'running',
	'run.status.ok': 'ok',
	'run.status.error': 'error',
	'run.status.cancelled': 'cancelled',
	'run.status.timeout': 'timed out',
	'run.heading': 'Run {id}',
	'run.lab': 'Lab',
	'run.events': 'Events',
	'run.elapsed': 'Time',
	'run.params': 'Parameters as applied',
	'run.sandbox': 'Sandbox',
	'run.sandbox.netns': 'Private network namespace: nothing else on the machine sees this run’s sockets.',
	'run.sandbox.host': 'No private network namespace: the run uses the host’s network.',
	'run.summary': 'Summary',
	'run.gap': '{n} event(s) missing before #{seq}: the view may be incomplete.',
	'run.download': 'Events as JSON Lines',
	'run.error': 'Error {code}',
	'run.truncated': '{n} more row(s) not shown here; the full record is in the events file.',
	'run.none': 'Choose a lab and press Run. The socket calls appear here as they happen.',

	'raw.heading': 'Events',
	'raw.unknown': 'event',

	'echo.trace': 'Socket calls',
	'echo.trace_help': 'Every socket call of both programs, in the order the kernel completed them. Time is milliseconds since the run started.',
	'echo.col.time': 'ms',
	'echo.col.server': 'Server',
	'echo.col.client': 'Client',
	'echo.col.client_byo': 'Your client (not traced: only the server side is visible)',
	'echo.messages': 'Echoed messages',
	'echo.messages_empty': 'No message has been echoed yet.',
	'echo.m.index': '#',
	'echo.m.sent': 'Sent',
	'echo.m.reply': 'Reply',
	'echo.m.bytes': 'Bytes',
	'echo.m.rtt': 'RTT',
	'echo.m.ok': 'OK',
	'echo.ok_yes': '✓',
	'echo.ok_no': '✗',
	'echo.ok_yes_label': 'reply matches',
	'echo.ok_no_label': 'reply does not match',
	'echo.stats_ok': '{good}/{n} ✓',
	'echo.stats_rtt': 'RTT min {min} · median {median} · max {max}',
	'echo.metrics': 'Measurements',
	'echo.metric_max': 'max {max}',
	'echo.listening': 'listening on {addr}:{port}, backlog {backlog}',
	'echo.blocked': 'blocked {t}',
	'echo.bytes': '{n} B',
	'echo.truncated_data': '(preview truncated)',
	'echo.bound_to': 'bound to {addr}',
	'echo.from': 'from {addr}',
	'echo.conn': 'connection {n}',
	'echo.eof': 'peer closed the connection (recv returned 0: end of file)',
	'echo.eof_server': 'the client closed the connection (recv returned 0: end of file)',
	'echo.eof_client': 'the server closed the connection (recv returned 0: end of file)',
	'echo.failed': 'failed',

	'errno.ECONNRESET.server': 'the client reset the connection',
	'errno.ECONNRESET.client': 'the server reset the connection',
	'errno.ECONNREFUSED': 'nobody is listening on that address and port',
	'errno.EADDRINUSE': 'another socket already uses this address and port',
	'errno.EPIPE': 'the peer has closed; the kernel refuses to send more',
	'errno.ETIMEDOUT': 'no answer before the time limit',
	'errno.ECANCELED': 'the run was cancelled',

	'byo.heading': 'Connect your own client',
	'byo.waiting': 'Waiting for the server to listen…',
	'byo.intro': 'The server is listening. Connect from a terminal on this machine or another one on the classroom network:',
	'byo.intro_local': 'The server is listening on a loopback address: connect from a terminal on the machine that runs socklab:',
	'byo.nc': 'netcat: type a line, press Enter, see it echoed',
	'byo.python': 'Python: send one line and print the reply',
	'byo.copy': 'Copy',
	'byo.copied': 'Copied',
	'byo.copy_failed': 'Select and copy by hand',
	'byo.idle': 'The run stops by itself after {idle} s without activity ({s} s left).',
	'byo.ended': 'The run has ended: the server no longer listens on this port.',
	'byo.trace_hint': 'Everything your client makes the server do appears below as it happens.',
	'echo.dgram_truncated': 'the datagram had {n} bytes: the rest was cut off',

	'net.loopback': 'Network: loopback only (one namespace, MTU {mtu}, no wire).',
	'net.client': 'Client host',
	'net.server': 'Server host',
	'net.wire_relay': 'wire: socklab relay (TAP ⇄ TAP)',
	'net.wire_veth': 'wire: veth pair (no impairment)',
	'net.none': 'no impairment',
	'net.facts': 'MTU {mtu} · wire seed {seed} (the same seed and parameters drop the same frames)',
	'net.knob.delay_ms': 'delay {v} ms',
	'net.knob.jitter_ms': 'jitter ±{v} ms',
	'net.knob.loss_pct': 'loss {v} %',
	'net.knob.dup_pct': 'duplication {v} %',
	'net.knob.reorder_pct': 'reordering {v} %',
	'net.knob.rate_kbit': 'rate {v} kbit/s',
	'wire.dir.c2s': 'client → server',
	'wire.dir.s2c': 'server → client',
	'wire.frame': 'frame {n}',
	'wire.action.pass': 'passed',
	'wire.action.delay': 'delayed',
	'wire.action.drop': 'dropped',
	'wire.action.dup': 'duplicated',
	'wire.action.reorder': 'held back (reordered)',
	'wire.action.queue_drop': 'dropped (queue full)',

	'ping.stats': 'Statistics',
	'ping.stat.sent': 'sent',
	'ping.stat.received': 'received',
	'ping.stat.lost': 'lost',
	'ping.stat.loss_pct': 'loss',
	'ping.stat.late': 'late',
	'ping.stat.duplicates': 'duplicates',
	'ping.stat.reordered': 'out of order',
	'ping.stat.rtt_min': 'RTT min',
	'ping.stat.rtt_avg': 'RTT avg',
	'ping.stat.rtt_max': 'RTT max',
	'ping.stat.rtt_mdev': 'RTT mdev',
	'ping.chart': 'Round-trip time per probe',
	'ping.chart_help': 'Each reply’s round-trip time. Lost probes are marked above the line, coloured by where the wire dropped them.',
	'ping.chart_label': 'Chart of round-trip times per probe, with lost probes marked',
	'ping.chart_empty': 'No reply yet.',
	'ping.axis_probe': 'probe',
	'ping.axis_rtt': 'RTT (ms)',
	'ping.series.rtt': 'RTT (ms)',
	'ping.series.late': 'late reply',
	'ping.series.lost_c2s': 'lost: probe dropped (c2s)',
	'ping.series.lost_s2c': 'lost: reply dropped (s2c)',
	'ping.series.lost': 'lost',
	'ping.probes': 'Probes',
	'ping.col.seq': 'probe',
	'ping.col.status': 'status',
	'ping.col.rtt': 'RTT',
	'ping.col.bytes': 'bytes',
	'ping.col.c2s': 'wire c2s (probe)',
	'ping.col.s2c': 'wire s2c (reply)',
	'ping.status.sent': 'sent, waiting…',
	'ping.status.reply': 'reply',
	'ping.status.lost': 'lost',
	'ping.status.late': 'late reply',
	'ping.tag.reordered': 'out of order',
	'ping.tag.dup': '+{n} duplicate(s)',
	'ping.tag.bad': 'reply differs',
	'ping.probe_tag': 'probe {n}',
	'ping.wire_events': 'What the wire did, frame by frame',
	'ping.wire_help': 'The relay’s own report: every frame it dropped, delayed, duplicated or held back, with the probe it belonged to.',
	'ping.bound': 'UDP server bound to {addr}',
	'ping.tcp_same': 'Same path over TCP',
	'ping.tcp_same_help': 'Runs tcp-echo over the same wire (same impairment and seed): TCP retransmits what the wire drops and delivers every byte, in order, later.',
	'ping.tcp_same_help_loopback': 'Runs tcp-echo with the same settings over loopback.',
	'ping.tcp_started': 'Started tcp-echo over the same wire.',
	'ping.tcp_busy': 'A run is still going; try again when it has ended.',
	'ping.datagrams': 'Datagrams',
	'ping.datagrams_help': 'One line per recvfrom(): who sent it and how many bytes, and the reply sendto() sent back.',
	'ping.dgram_in': 'received from',
	'ping.dgram_out': 'echoed to',
	'ping.byo_intro': 'The UDP echo server is waiting. Send it datagrams from a terminal:',
	'ping.byo_nc': 'netcat (UDP): type a line, press Enter, see it come back',
	'ping.byo_python': 'Python: send one datagram and print the reply and its sender',
	'ping.byo_hint': 'Each datagram appears below with its source address and size. The server stops after {idle} s without a datagram.',

	'player.controls': 'Replay controls',
	'player.back': 'Step back one event',
	'player.forward': 'Step forward one event',
	'player.play': 'Play',
	'player.pause': 'Pause',
	'player.speed': 'Speed',
	'player.speed_live': 'as they come',
	'player.speed_n': '{n} events/s',
	'player.pos': 'event {n} / {total}',
	'player.jump': 'Jump to event number',
	'player.jump_ph': 'event #',
	'player.go': 'Go',
	'player.following': 'Following the instructor',
	'player.export': 'Save this run as a file (to open again later)',
	'player.export_short': 'Export',

	'bundle.open': 'Open a run file…',
	'bundle.title': 'From file {name}',
	'bundle.opened': 'Opened {name}: {n} events.',
	'bundle.refused': 'That file cannot be opened: {reason}',
	'bundle.err_shape': 'it is not a socklab run file (expected a JSON object)',
	'bundle.err_format': 'it is not a socklab run file (format is "{format}")',
	'bundle.err_version': 'unsupported version {version}',
	'bundle.err_meta': '"meta" is missing',
	'bundle.err_events': '"events" is missing or empty',
	'bundle.err_run': 'the first event has no valid run id',
	'bundle.err_event': 'event {i} is not a valid event',
	'bundle.err_seq': 'event {i} has seq {seq}; events must be numbered 0, 1, 2, … without gaps',
	'bundle.err_mixed': 'event {i} belongs to another run or lab',
	'bundle.err_start': 'the first event is not run.start',
	'bundle.err_size': 'the file is larger than {max} MiB',
	'bundle.err_json': 'it is not valid JSON ({reason})',

	'class.heading': 'Classroom',
	'class.code': 'Class code',
	'class.name': 'Your name',
	'class.join': 'Join',
	'class.instructor': 'Instructor',
	'class.secret': 'Instructor secret',
	'class.signin': 'Sign in',
	'class.signed_in': 'Signed in as the instructor.',
	'class.open': 'Open a class',
	'class.code_label': 'Class code',
	'class.members': '{n} student(s)',
	'class.teaching': 'Teaching class {code}.',
	'class.teaching_help': 'Runs you start now are shown live to every student; your replay controls drive their view.',
	'class.end': 'End class',
	'class.attending': 'In class {code} as {name}.',
	'class.try': 'Try it myself',
	'class.try_help': 'Runs the class lab with the same parameters in your own sandbox, shown beside the instructor’s run. Change a knob in the form and press Run to compare.',
	'class.leave': 'Leave',
	'class.run_title': 'Class {code}: the instructor’s run',
	'class.run_button': 'Run for the class',
	'class.mine': 'My run',
	'class.ended_by': 'The class has ended ({reason}).',
	'class.lost': 'The connection to the server was lost; join the class again.',
};

const tables = { en };
let lang = 'en';

// Choose the language for later t() calls ("zh-CN", or "zh" for the first zh-*
// table); unknown languages get English. Returns the language chosen.
export function setLang(code) {
	const c = String(code || '');
	const base = c.split('-')[0];
	lang = Object.hasOwn(tables, c) ? c : Object.keys(tables).find((k) => k.split('-')[0] === base) || 'en';
	return lang;
}

export function currentLang() {
	return lang;
}

// The string for key in the current language with {name} placeholders replaced
// from vars. Values are inserted as text by the callers (textContent), so no
// escaping is needed here.
export function t(key, vars) {
	const table = tables[lang];
	let s = Object.hasOwn(table, key) ? table[key] : Object.hasOwn(en, key) ? en[key] : key;
	if (vars) {
		s = s.replace(/\{([a-z_]+)\}/g, (m, name) =>
			Object.hasOwn(vars, name) ? String(vars[name]) : m);
	}
	return s;
}

// True when key has a string in the current language or in English.
export function has(key) {
	return Object.hasOwn(tables[lang], key) || Object.hasOwn(en, key);
}

// Fill every element that carries data-i18n="key" (its text) or
// data-i18n-attr="attr:key,attr:key" (attributes) under root.
export function applyI18n(root) {
	for (const el of root.querySelectorAll('[data-i18n]')) {
		el.textContent = t(el.dataset.i18n);
	}
	for (const el of root.querySelectorAll('[data-i18n-attr]')) {
		for (const pair of el.dataset.i18nAttr.split(',')) {
			const [attr, key] = pair.split(':');
			el.setAttribute(attr.trim(), t(key.trim()));
		}
	}
}

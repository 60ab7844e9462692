// test_dashboard.mjs: the dashboard in a real Chromium against a real `socklab serve` (TAP output).
//
// Run as `node tests/e2e/test_dashboard.mjs` with SOCKLAB=path/to/build/socklab.
// The server runs with ports 0 and tells its ports through --port-file; the
// browser is headless Chromium driven by playwright-core. Every wait has a
// deadline; screenshots go to build/test-logs/e2e-*.png.

import net from 'node:net';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

// ---- a TCP client like a student's, on the loopback only ----

function echoClient(host, port, text) {
	return new Promise((resolve, reject) => {
		const s = net.connect({ host, port });
		let got = '';
		const timer = setTimeout(() => {
			s.destroy();
			reject(new Error(`no complete reply within 10 s (got ${JSON.stringify(got)})`));
		}, 10000);
		s.on('connect', () => s.write(text));
		s.on('data', (d) => {
			got += d.toString('latin1');
			if (got.length >= text.length) s.end();
		});
		s.on('close', () => {
			clearTimeout(timer);
			resolve(got);
		});
		s.on('error', (e) => {
			clearTimeout(timer);
			reject(e);
		});
	});
}

// Connect, send text, wait for the echo, then abort the connection (RST).
function resetClient(host, port, text) {
	return new Promise((resolve, reject) => {
		const s = net.connect({ host, port });
		const timer = setTimeout(() => {
			s.destroy();
			reject(new Error('no echo within 10 s before the reset'));
		}, 10000);
		s.on('connect', () => s.write(text));
		s.once('data', () => {
			clearTimeout(timer);
			s.resetAndDestroy();
			resolve();
		});
		s.on('error', (e) => {
			clearTimeout(timer);
			reject(e);
		});
	});
}

// ---- the tests ----

// tcp-echo's main knobs (web/labs/tcp-echo.js formHints.main).
const ECHO_MAIN = ['mode', 'messages', 'text', 'clients', 'server_style', 'network'];
let srv;
let page;
let labs;
const problems = []; // console errors, page errors, CSP violations
let okRunId = null;

async function shot(name) {
	await page.screenshot({ path: path.join(LOGS, `e2e-${name}.png`), fullPage: true });
}

async function texts(selector) {
	return page.locator(selector).allTextContents();
}

async function waitVisible(selector, timeout = WAIT) {
	await page.locator(selector).first().waitFor({ state: 'visible', timeout });
}

async function setDefaults() {
	await page.click('#reset-btn');
	if (await page.isChecked('#byo')) await page.uncheck('#byo');
}

test('the catalogue lists tcp-echo from /api/labs and the live connection opens', async () => {
	await page.goto(`${srv.base}/`);
	const echo = labs.find((l) => l.name === 'tcp-echo');
	assert(echo, '/api/labs has no tcp-echo');
	const item = page.locator('.lab-item[data-lab="tcp-echo"]');
	await item.waitFor({ state: 'visible', timeout: WAIT });
	const txt = await item.textContent();
	assert(txt.includes(echo.title), `catalogue entry "${txt}" lacks the title "${echo.title}"`);
	assert(txt.includes(echo.summary), 'catalogue entry lacks the summary');
	await waitVisible('#conn[data-state="open"]');
	await page.click('.lab-item[data-lab="tcp-echo"]');
	await waitVisible('#lab-card');
	assertEq(await page.textContent('#lab-title'), echo.title, 'lab heading');
});

test('the form has the parameters of /api/labs with their limits', async () => {
	const echo = labs.find((l) => l.name === 'tcp-echo');
	for (const p of echo.params) {
		const n = await page.locator(`#p-${p.name}`).count();
		if (p.server_assigned) {
			assertEq(n, 0, `server-assigned parameter ${p.name} in the form`);
			continue;
		}
		assertEq(n, 1, `inputs for parameter ${p.name}`);
		// The lab's main knobs are the form; every other one is under "more knobs".
		const inAdvanced = await page.locator(`details.advanced #p-${p.name}`).count();
		assertEq(inAdvanced, ECHO_MAIN.includes(p.name) ? 0 : 1, `${p.name} inside the "more knobs" section`);
		if (p.type === 'integer') {
			const el = page.locator(`#p-${p.name}`);
			assertEq(await el.getAttribute('type'), 'number', `${p.name} input type`);
			assertEq(await el.getAttribute('min'), String(p.min), `${p.name} min`);
			assertEq(await el.getAttribute('max'), String(p.max), `${p.name} max`);
		}
		if (p.type === 'choice') {
			const opts = await page.locator(`#p-${p.name} option`).evaluateAll((os) => os.map((o) => o.value));
			assertEq(opts, p.choices, `${p.name} choices`);
		}
		if (p.type === 'string' && p.max_len !== undefined) {
			assertEq(await page.getAttribute(`#p-${p.name}`, 'maxlength'), String(p.max_len), `${p.name} maxlength`);
		}
	}
	const messages = echo.params.find((p) => p.name === 'messages');
	assert(messages && !messages.advanced, 'messages is a basic parameter');
	await waitVisible('#p-messages');
	const help = await page.textContent('#p-messages-help');
	assert(help.includes(messages.help), `help text "${help}" lacks "${messages.help}"`);
	assert(await page.isVisible('#byo'), 'no "connect my own client" option');
});

test('an out-of-range value shows an error naming the field, and no run starts', async () => {
	const messages = labs.find((l) => l.name === 'tcp-echo').params.find((p) => p.name === 'messages');
	await page.fill('#p-messages', String(messages.max + 1));
	await page.click('#run-btn');
	await waitVisible('#p-messages-error');
	const err = await page.textContent('#p-messages-error');
	assert(err.includes(messages.title), `error "${err}" does not name the field "${messages.title}"`);
	assert(err.includes(String(messages.max)), `error "${err}" does not give the limit`);
	assertEq(await page.getAttribute('#p-messages', 'aria-invalid'), 'true', 'aria-invalid');
	assertEq(await page.locator('.run-card').count(), 0, 'run views after a refused form');
	await shot('form-error');
	await page.fill('#p-messages', '3');
	await page.click('#reset-btn');
	assertEq(await page.isVisible('#p-messages-error'), false, 'error still shown after reset');
});

test("fields that do not apply are disabled with the reason; the server's refusal names the field once", async () => {
	// With your own client the lab's client knobs do not apply: disabled,
	// with the reason, and not sent.
	await page.check('#byo');
	for (const k of ['messages', 'text', 'clients']) {
		assertEq(await page.isDisabled(`#p-${k}`), true, `${k} disabled with your own client`);
		assertEq(await page.textContent(`.field[data-param="${k}"] .na-why`), 'Does not apply when you connect your own client.', `${k}: why`);
	}
	// Loopback has no wire: its knobs are disabled until two hosts.
	assertEq(await page.isDisabled('#p-c2s_delay_ms'), true, 'the wire delay on loopback');
	await page.selectOption('#p-network', 'two-hosts');
	assertEq(await page.isDisabled('#p-c2s_delay_ms'), false, 'the wire delay with two hosts');
	// The browser checks each field alone; the server checks them together
	// and refuses, naming the parameter: shown next to the field, named once.
	await page.uncheck('#byo');
	await page.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
	await page.fill('#p-c2s_delay_ms', '10');
	await page.fill('#p-c2s_jitter_ms', '100');
	await page.click('#run-btn');
	await waitVisible('#p-c2s_jitter_ms-error');
	const err = await page.textContent('#p-c2s_jitter_ms-error');
	const title = await page.textContent('label[for="p-c2s_jitter_ms"]');
	assert(err.startsWith(`${title.replace(/ \(.*\)$/, '')}: the jitter (100 ms) must not exceed`), `the server's refusal "${err}" (field "${title}")`);
	assert(!err.includes("parameter '"), `the field is named once: "${err}"`);
	assertEq(await page.textContent('#run-status'), 'The server refused the run: see the highlighted field.', 'the status beside Run');
	assert(await page.isEnabled('#run-btn'), 'Run stays disabled after a refusal');
	await setDefaults();
	assertEq(await page.isDisabled('#p-messages'), false, 'messages enabled again without your own client');
});

test('a tcp-echo run shows both sides, the echoes and the end status', async () => {
	await page.fill('#p-messages', '3');
	await page.click('#run-btn');
	await waitVisible('.run-card');
	await waitVisible('.run-summary .pill-ok', RUN_WAIT);
	okRunId = await page.getAttribute('.run-card', 'data-run');
	assert(/^[0-9a-f]+$/i.test(okRunId), `run id "${okRunId}"`);

	const server = new Set(await texts('.echo-trace .c-server .fn'));
	const client = new Set(await texts('.echo-trace .c-client .fn'));
	for (const c of ['socket', 'bind', 'listen', 'accept', 'recv', 'send', 'close']) {
		assert(server.has(c), `server column lacks ${c} (has ${[...server]})`);
	}
	for (const c of ['socket', 'connect', 'send', 'recv', 'close']) {
		assert(client.has(c), `client column lacks ${c} (has ${[...client]})`);
	}
	// The server's last recv returned 0 when the client closed: highlighted.
	await waitVisible('.echo-trace .c-server .sc-eof');
	// Rows are in seq order on one time axis.
	const seqs = await page.locator('.echo-trace .trace-body .trow').evaluateAll((rs) => rs.map((r) => Number(r.dataset.seq)));
	assert(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `rows out of seq order: ${seqs}`);

	const rows = page.locator('.echo-table .trace-body .erow');
	assertEq(await rows.count(), 3, 'echoed messages');
	for (let i = 0; i < 3; i++) {
		const sent = await rows.nth(i).locator('.sent').textContent();
		const reply = await rows.nth(i).locator('.reply').textContent();
		assertEq(reply, sent.toUpperCase(), `reply ${i + 1}`);
		assert(sent !== reply, `message ${i + 1} has no lower case to upper-case ("${sent}")`);
		assertEq(await rows.nth(i).locator('.tick').count(), 1, `reply ${i + 1} marked ok`);
	}
	assert(await page.isVisible('.sandbox'), 'no sandbox facts');
	assert((await page.textContent('.run-summary')).includes('replies ok'), 'summary lacks replies_ok');
	assert(await page.isEnabled('#run-btn'), 'Run not enabled again after the run');
	await shot('run');
});

test('bring your own client: the page shows where to connect and what the server did', async () => {
	await page.check('#byo');
	await page.click('#run-btn');
	await waitVisible('.byo .byo-port');
	const host = await page.textContent('.byo .byo-host');
	const port = Number(await page.textContent('.byo .byo-port'));
	assert(port > 0 && port < 65536, `port "${port}"`);
	assert(/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host), `host "${host}" is not a loopback address`);
	const nc = await page.textContent('.byo .cmd-nc');
	assertEq(nc, `nc ${host} ${port}`, 'nc command');
	const py = await page.textContent('.byo .cmd-python');
	assert(py.includes(`('${host}', ${port})`), `python command "${py}"`);
	assert(await page.isEnabled('#cancel-btn'), 'Cancel not enabled during the run');

	const reply = await echoClient(host, port, 'hello\n');
	assertEq(reply, 'HELLO\n', 'reply from the server');
	// A second client aborts with a RST: the server's recv fails with ECONNRESET.
	await resetClient(host, port, 'bye\n');

	await waitVisible('.echo-trace .c-server .sc-accept');
	await until(async () => (await texts('.echo-trace .c-server .sc-recv .data')).includes('"hello\\n"'), WAIT,
		'the server recv of "hello\\n"');
	await waitVisible('.echo-trace .c-server .sc-eof');
	const eof = await page.textContent('.echo-trace .c-server .sc-eof');
	assert(/closed/.test(eof), `eof row "${eof}"`);
	await waitVisible('.echo-trace .c-server.cell-failed');
	const reset = await page.textContent('.echo-trace .c-server.cell-failed');
	assert(reset.includes('ECONNRESET') && /client reset the connection/.test(reset), `reset row "${reset}"`);
	await page.$eval('.trace-scroll', (el) => { el.scrollTop = el.scrollHeight; });
	await shot('byo');

	await page.click('#cancel-btn');
	await waitVisible('.run-summary .pill', RUN_WAIT);
	const status = await page.getAttribute('.run-summary .pill', 'data-status');
	assertEq(status, 'cancelled', 'status after Cancel');
	assert(await page.isEnabled('#run-btn'), 'Run not enabled again after cancel');
	await setDefaults();
});

test('recent runs lists the finished run and reopens it with the same view', async () => {
	assert(okRunId, 'no finished run from an earlier test');
	await page.click('#runs-refresh');
	const item = page.locator(`.run-item[data-run="${okRunId}"]`);
	await item.waitFor({ state: 'visible', timeout: WAIT });
	await item.click();
	await waitVisible(`.run-card[data-run="${okRunId}"]`);
	await waitVisible('.run-summary .pill-ok');
	assertEq(await page.locator('.echo-table .trace-body .erow').count(), 3, 'echoed messages of the reopened run');
	const client = new Set(await texts('.echo-trace .c-client .fn'));
	assert(client.has('connect'), 'reopened run lacks the client connect');
	await shot('reopened');
});

test('the tcp-echo view highlights failures and shows unknown events as raw JSON', async () => {
	// Events a run can produce but the labs above did not: fed to the real
	// renderer module as the server serves it.
	const r = await page.evaluate(async () => {
		const mod = await import('/labs/tcp-echo.js');
		const root = document.createElement('div');
		root.id = 'fixture';
		document.querySelector('#view').appendChild(root);
		const env = (seq, type, f) => ({ v: 1, run: 'feedfacefeedface', seq, t_us: seq * 1000, lab: 'tcp-echo', type, ...f });
		const view = mod.create(root, { runId: 'feedfacefeedface', lab: 'tcp-echo', live: false });
		view.push([
			env(0, 'run.start', { params: { mode: 'both' }, sandbox: { netns: true, note: 'test' } }),
			env(1, 'syscall', { who: 'client', conn: 1, call: 'connect', fd: 5, args: { addr: '127.0.0.1', port: 9 },
				ret: -1, errno: 111, errno_name: 'ECONNREFUSED', error: 'Connection refused', t_call_us: 900, blocked_us: 100 }),
			env(2, 'segment', { dir: 'out', flags: 'SYN' }),
			env(4, 'error', { code: 'connect_failed', message: 'the client could not connect' }),
			env(5, 'run.end', { status: 'error', summary: {} }),
		]);
		const text = (sel) => [...root.querySelectorAll(sel)].map((e) => e.textContent);
		const out = {
			failed: text('.c-client.cell-failed'),
			raw: text('.raw'),
			errors: text('.callout-error'),
			gap: text('.callout-warn').join(''),
			status: root.querySelector('.run-summary .pill').dataset.status,
		};
		root.remove();
		return out;
	});
	assert(r.failed.length === 1 && r.failed[0].includes('ECONNREFUSED') && r.failed[0].includes('Connection refused'),
		`failed connect row ${JSON.stringify(r.failed)}`);
	assert(r.raw.length === 1 && r.raw[0].includes('segment') && r.raw[0].includes('"flags":"SYN"'),
		`unknown event row ${JSON.stringify(r.raw)}`);
	assert(r.errors.some((e) => e.includes('connect_failed')), `error event ${JSON.stringify(r.errors)}`);
	assert(/1 event/.test(r.gap), `missing seq 3 not reported: "${r.gap}"`);
	assertEq(r.status, 'error', 'run.end status');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

// ---- runner ----

runTap({
	tmpPrefix: 'socklab-e2e-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-server.log' });
		labs = await (await fetch(`${srv.base}/api/labs`)).json();
		page = await launchPage(chromium, tmp, problems);
		return `socklab serve on port ${srv.ports.http_port} (WebSocket at /ws), Chromium`;
	},
	failShots: (n) => [[page, `e2e-fail-${n}.png`]],
});

// test_sticky.mjs: the sticky view in a real Chromium against a real `socklab serve` (TAP output).
//
// Two runs through the form: a stream run whose three lanes must show as many
// bars as the run's own events have sends, data segments and recvs (each bar
// coloured by its messages), and a framed run whose header bytes are shown in
// hex next to the value they encode. Every wait has a deadline; screenshots
// go to build/test-logs/e2e-sticky-*.png.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const SOCKLAB = process.env.SOCKLAB || path.join(repo, 'build', 'socklab');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LOGS = path.join(repo, 'build', 'test-logs');
const WAIT = 20000;
const RUN_WAIT = 60000;

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

function assert(cond, msg) {
	if (!cond) throw new Error(msg);
}

function assertEq(got, want, what) {
	if (JSON.stringify(got) !== JSON.stringify(want)) {
		throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
	}
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, ms, what) {
	const end = Date.now() + ms;
	let last;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v;
		} catch (e) {
			last = e;
		}
		if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (${last.message})` : ''}`);
		await sleep(50);
	}
}

let srv;
let page;
let tmp;
const problems = [];

async function startServer() {
	const portFile = path.join(tmp, 'ports.json');
	const log = fs.openSync(path.join(LOGS, 'e2e-sticky-server.log'), 'w');
	const child = spawn(SOCKLAB, ['serve', '--http-port', '0', '--ws-port', '0', '--port-file', portFile,
		'--data', path.join(tmp, 'data')], { stdio: ['ignore', log, log] });
	let exited = null;
	child.on('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
	const ports = await until(() => {
		if (exited) throw new Error(`socklab serve ${exited}`);
		if (!fs.existsSync(portFile)) return null;
		const p = JSON.parse(fs.readFileSync(portFile, 'utf8'));
		return p.http_port > 0 && p.ws_port > 0 ? p : null;
	}, 15000, 'the port file');
	return { child, base: `http://127.0.0.1:${ports.http_port}` };
}

async function shot(name) {
	await page.screenshot({ path: path.join(LOGS, `e2e-sticky-${name}.png`), fullPage: true });
}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function runAndWait() {
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	return { id, status: await page.getAttribute('.run-summary .pill', 'data-status') };
}


function lanes(evs) {
	return {
		send: evs.filter((e) => e.type === 'send').length,
		segment: evs.filter((e) => e.type === 'segment' && e.bytes > 0 && !e.retransmit).length,
		recv: evs.filter((e) => e.type === 'recv').length,
	};
}

async function shown() {
	const out = {};
	for (const lane of ['send', 'segment', 'recv']) {
		out[lane] = Number(await page.getAttribute(`.stk-lane-${lane}`, 'data-count'));
	}
	return out;
}

test('a stream run draws three lanes with one bar per send, data segment and recv', async () => {
	await page.goto(`${srv.base}/#/lab/sticky`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-count').waitFor({ timeout: WAIT });
	await page.fill('#p-count', '6');
	await page.fill('#p-gap_ms', '5');
	await page.fill('#p-recv_delay_ms', '200');
	await page.check('#p-nodelay');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const evs = await events(id);
	const want = lanes(evs);
	assertEq(want.send, 6, 'sends in the events');
	await until(async () => JSON.stringify(await shown()) === JSON.stringify(want), WAIT, 'the lane counts');
	assertEq(await shown(), want, 'lane counts');
	// One coloured part per message in each lane (the lanes carry all 6 messages).
	for (const lane of ['send', 'segment', 'recv']) {
		const msgs = await page.locator(`.stk-lane-${lane} .stk-part`).evaluateAll((ps) => [...new Set(ps.map((p) => p.dataset.msg))].sort());
		assertEq(msgs, ['0', '1', '2', '3', '4', '5'], `messages in the ${lane} lane`);
	}
	const glued = evs.filter((e) => e.type === 'recv' && e.msgs.length > 1).length;
	assertEq(await page.locator('.stk-lane-recv .stk-bar.stk-glued').count(), glued, 'glued recv bars');
	assert(await page.locator('.callout-note[data-key="sticky.verdict.receiver"]').count() === 1, 'the receiver verdict');
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-stream.png'), fullPage: true });
});

test('a framed run shows each header in hex with the length it encodes', async () => {
	await page.goto(`${srv.base}/#/lab/sticky`);
	await page.locator('#p-mode').waitFor({ timeout: WAIT });
	await page.selectOption('#p-mode', 'framed');
	await page.fill('#p-count', '3');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const msgs = (await events(id)).filter((e) => e.type === 'message');
	assertEq(msgs.length, 3, 'message events');
	await until(async () => (await page.locator('.stk-frame').count()) === 3, WAIT, 'three framed messages');
	const hex = await page.locator('.stk-frame .stk-hex').allTextContents();
	assertEq(hex, msgs.map((m) => m.header_hex), 'header bytes');
	const first = await page.locator('.stk-frame').first().textContent();
	assert(first.includes(`= ${msgs[0].header_len}`) && first.includes('!I'), `decoded value shown: ${first}`);
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-framed.png'), fullPage: true });
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

async function main() {
	fs.mkdirSync(LOGS, { recursive: true });
	console.log(`1..${tests.length + 1}`);
	let n = 1;
	let failed = 0;
	tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socklab-e2e-sticky-'));
	let ctx = null;
	try {
		try {
			const { chromium } = await import('playwright-core');
			srv = await startServer();
			ctx = await chromium.launchPersistentContext(path.join(tmp, 'chromium'), {
				executablePath: CHROMIUM, headless: true, viewport: { width: 1440, height: 1000 },
				args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
			});
			page = ctx.pages()[0] || await ctx.newPage();
			page.setDefaultTimeout(WAIT);
			page.on('console', (m) => {
				if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
			});
			page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
			console.log(`ok ${n++} - setup: socklab serve and Chromium`);
		} catch (e) {
			console.log(`not ok ${n++} - setup: ${String(e.message).split('\n')[0]}`);
			for (const t of tests) console.log(`not ok ${n++} - ${t.name}: setup failed`);
			return 1;
		}
		for (const t of tests) {
			try {
				await t.fn();
				console.log(`ok ${n++} - ${t.name}`);
			} catch (e) {
				failed++;
				console.log(`not ok ${n++} - ${t.name}: ${String(e.message).split('\n')[0]}`);
				await page.screenshot({ path: path.join(LOGS, `e2e-sticky-fail-${n - 1}.png`), fullPage: true }).catch(() => {});
			}
		}
		return failed ? 1 : 0;
	} finally {
		if (ctx) await ctx.close().catch(() => {});
		if (srv && srv.child.exitCode === null) {
			const gone = new Promise((r) => srv.child.once('exit', r));
			srv.child.kill('SIGTERM');
			const k = setTimeout(() => srv.child.kill('SIGKILL'), 5000);
			await gone;
			clearTimeout(k);
		}
		fs.rmSync(tmp, { recursive: true, force: true });
	}
}

process.on('exit', () => {
	if (srv && srv.child.exitCode === null && srv.child.signalCode === null) srv.child.kill('SIGKILL');
});
for (const sig of ['SIGTERM', 'SIGINT']) {
	process.on(sig, () => {
		console.log(`# stopped by ${sig}`);
		process.exit(1);
	});
}

main().then((rc) => process.exit(rc), (e) => {
	console.log(`not ok 999 - unexpected: ${String(e && e.message).split('\n')[0]}`);
	process.exit(1);
});

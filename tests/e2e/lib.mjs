// lib.mjs: the harness the browser tests share (not a test: tests/run runs test_*.mjs only).
//
// A test file registers its tests with test(), then calls runTap(): it prints
// TAP ("1..N", "ok N - name", "not ok N - name: reason"), takes the file's
// failure screenshots, and on every exit path closes Chromium and stops the
// `socklab serve` that startServer() started (ports 0, told through
// --port-file). Every wait has a deadline.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
export const SOCKLAB = process.env.SOCKLAB || path.join(repo, 'build', 'socklab');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const LOGS = path.join(repo, 'build', 'test-logs');
export const WAIT = 20000; // ms for anything the page should show
export const RUN_WAIT = 60000; // ms for a lab run to finish

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
	'--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

const tests = [];
export const test = (name, fn) => tests.push({ name, fn });

export function assert(cond, msg) {
	if (!cond) throw new Error(msg);
}

export function assertEq(got, want, what) {
	if (JSON.stringify(got) !== JSON.stringify(want)) {
		throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
	}
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll fn until it returns a truthy value or the deadline passes.
export async function until(fn, ms, what) {
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

// The first line of an error, and for a Playwright timeout the locator it
// waited for (the first line alone does not say which element never came).
// How many rows a set of boxes ({top, bottom}) sits on: a box starts a new
// row when it begins below every box of the row before. Boxes of one row
// differ in height and so in top by a pixel or two (centred controls), which
// rounding tops into buckets miscounts when a row sits near a bucket's edge.
export function rowsOf(boxes) {
	let rows = 0;
	let bottom = -Infinity;
	for (const b of [...boxes].sort((x, y) => x.top - y.top)) {
		if (b.top >= bottom - 1) {
			rows++;
			bottom = b.bottom;
		} else bottom = Math.max(bottom, b.bottom);
	}
	return rows;
}

export function oneLine(e) {
	const lines = String(e && e.message ? e.message : e).split('\n');
	const waited = lines.find((l) => /waiting for (locator|selector)/.test(l));
	return waited && !lines[0].includes(waited.trim()) ? `${lines[0]} (${waited.trim()})` : lines[0];
}

// Collect what a page reports as wrong (console errors, page errors, CSP
// violations) into problems, each prefixed with who. Other work on this
// machine may add or remove network interfaces; Chromium then aborts requests
// in flight with ERR_NETWORK_CHANGED: that is the machine, not the page.
export function watchPage(page, who, problems) {
	page.setDefaultTimeout(WAIT);
	page.on('console', (m) => {
		if (/ERR_NETWORK_CHANGED/.test(m.text())) return;
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`${who} console: ${m.text()}`);
	});
	page.on('pageerror', (e) => problems.push(`${who} page error: ${e.message}`));
}

// The event position of a pane's player, and the text of its stage.
export async function playerPos(page, pane = '#pane-main') {
	return page.$eval(`${pane} .player`, (el) => Number(el.dataset.pos));
}

export async function stageText(page, pane = '#pane-main') {
	return page.$eval(`${pane} .player-stage`, (el) => el.innerText);
}

// What runTap must close and stop however the process ends.
let server = null; // {child, ...} as soon as it is spawned
let browser = null; // a Browser or a persistent BrowserContext

// ---- the server ----

// Start `socklab serve` with ports 0 and its data in tmp; its output goes to
// build/test-logs/<log>; args are extra flags. Resolves to {child, ports, base}.
export async function startServer(tmp, { log = 'e2e-server.log', args = [] } = {}) {
	const portFile = path.join(tmp, 'ports.json');
	const fd = fs.openSync(path.join(LOGS, log), 'w');
	const child = spawn(SOCKLAB, ['serve', '--http-port', '0', '--port-file', portFile,
		'--data', path.join(tmp, 'data'), ...args], { stdio: ['ignore', fd, fd] });
	server = { child };
	let exited = null;
	child.on('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
	child.on('error', (e) => { exited = e.message; });
	const ports = await until(() => {
		if (exited) throw new Error(`socklab serve ${exited} (see build/test-logs/${log})`);
		if (!fs.existsSync(portFile)) return null;
		const p = JSON.parse(fs.readFileSync(portFile, 'utf8'));
		return p.http_port > 0 && p.ws_port > 0 ? p : null;
	}, 15000, 'the port file of socklab serve');
	server = { child, ports, base: `http://127.0.0.1:${ports.http_port}` };
	return server;
}

export async function stopServer(srv) {
	if (!srv || srv.child.exitCode !== null || srv.child.signalCode !== null) return;
	const gone = new Promise((r) => srv.child.once('exit', r));
	srv.child.kill('SIGTERM');
	const t = setTimeout(() => srv.child.kill('SIGKILL'), 5000);
	await gone;
	clearTimeout(t);
}

// ---- Chromium ----

// Headless Chromium with its profile in tmp, and its one page; console errors,
// page errors and CSP violations are pushed to problems.
export async function launchPage(chromium, tmp, problems, { args = CHROMIUM_ARGS } = {}) {
	browser = await chromium.launchPersistentContext(path.join(tmp, 'chromium'), {
		executablePath: CHROMIUM,
		headless: true,
		viewport: { width: 1440, height: 1000 },
		args,
	});
	const page = browser.pages()[0] || await browser.newPage();
	page.setDefaultTimeout(WAIT);
	page.on('console', (m) => {
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) {
			problems.push(`console ${m.type()}: ${m.text()}`);
		}
	});
	page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
	return page;
}

// Headless Chromium for several contexts (the caller makes them).
export async function launchBrowser(chromium, { args = CHROMIUM_ARGS } = {}) {
	browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
	return browser;
}

// ---- runner ----

// Run the registered tests as TAP. opts:
//   tmpPrefix  prefix of the temporary directory (removed at the end)
//   setup      async (chromium, tmp) => the text of the "ok 1 - setup: ..." line
//   failShots  (n) => [[page, file name in build/test-logs], ...] after test n fails
//   after      async () => ..., after the last test (not after a failed setup)
export function runTap({ tmpPrefix, setup, failShots, after }) {
	// If this process is stopped (tests/run's timeout sends SIGTERM), the
	// server must not outlive it.
	process.on('exit', () => {
		if (server && server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
	});
	for (const sig of ['SIGTERM', 'SIGINT']) {
		process.on(sig, () => {
			console.log(`# stopped by ${sig}`);
			process.exit(1);
		});
	}
	main({ tmpPrefix, setup, failShots, after }).then((rc) => process.exit(rc), (e) => {
		console.log(`not ok 999 - unexpected: ${oneLine(e)}`);
		process.exit(1);
	});
}

async function main({ tmpPrefix, setup, failShots, after }) {
	fs.mkdirSync(LOGS, { recursive: true });
	console.log(`1..${tests.length + 1}`);
	let n = 1;
	let failed = 0;
	const tmp = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
	try {
		try {
			const { chromium } = await import('playwright-core').catch((e) => {
				throw new Error(`playwright-core is not installed (make test-deps): ${e.message}`);
			});
			const what = await setup(chromium, tmp);
			console.log(`ok ${n++} - setup: ${what}`);
		} catch (e) {
			console.log(`not ok ${n++} - setup: ${oneLine(e)}`);
			for (const t of tests) console.log(`not ok ${n++} - ${t.name}: setup failed`);
			return 1;
		}
		for (const t of tests) {
			try {
				await t.fn();
				console.log(`ok ${n++} - ${t.name}`);
			} catch (e) {
				failed++;
				console.log(`not ok ${n++} - ${t.name}: ${oneLine(e)}`);
				for (const [page, file] of failShots(n - 1)) {
					await page.screenshot({ path: path.join(LOGS, file), fullPage: true }).catch(() => {});
				}
			}
		}
		if (after) await after();
		return failed ? 1 : 0;
	} finally {
		try {
			if (browser) await browser.close();
		} catch (e) {
			console.log(`# closing Chromium: ${oneLine(e)}`);
		}
		try {
			await stopServer(server);
		} catch (e) {
			console.log(`# stopping the server: ${oneLine(e)}`);
		}
		fs.rmSync(tmp, { recursive: true, force: true });
	}
}

// app.js: the dashboard: lab catalogue, parameter form, live run view, recent runs.
//
// Data flow: GET /api/config and /api/labs build the catalogue and forms; a run
// is started over the WebSocket ({"op":"run"}); its events arrive one message
// each and are queued, and the lab's renderer gets them in batches once per
// animation frame, so thousands of events per second do not freeze the page.
// A finished run is reopened from GET /api/runs/ID/events with the same
// renderer; a run still going is followed with {"op":"watch"}.

import { t, tr, has, setLang, applyI18n, loadTranslations, preferredLang, onLangChange, currentLang, LANGS } from './i18n.js';
import { h, clear, replace } from './dom.js';
import { getJSON, getRunEvents, eventsURL, wsURL, LiveSocket } from './api.js';
import { buildForm } from './form.js';
import { rendererFor } from './labs/index.js';
import { Player } from './player.js';
import { exportRun, importBundleFile } from './bundle.js';
import * as classroom from './classroom.js';
import * as quiz from './quiz.js';
import * as classquiz from './classquiz.js';
import { pairUdpTcp, showPairs, markPairRows } from './pairs.js';

// How often the recent runs list is read again.
const RUNS_REFRESH_MS = 15000;

const $ = (id) => document.getElementById(id);

const state = {
	config: null,
	labs: [],
	lab: null,       // the selected lab's descriptor
	form: null,      // its form controller
	socket: null,
	live: null,      // the run this page started: {tag, runId, lab, pending[]}
	streams: new Map(), // runs followed over the WebSocket: id -> {lab, events[]}
	view: null,      // the main pane: {runId, lab, player, live}
	compare: null,   // a student's own run beside the class run: {runId, lab, player, live}
	pairs: null,     // UDP beside TCP: {udpPane, tcpPane, res} (pairs.js), while both are shown
	cls: null,       // classroom: {role: 'teacher'|'student', code, name, run, lab, params, view, members}
	instructor: false, // signed in as the instructor
	tagSeq: 0,
};

function statusText(status) {
	return has(`run.status.${status}`) ? t(`run.status.${status}`) : String(status);
}

// What the server says when a run's bundle could not be stored whole (its
// meta.json has incomplete, events, events_seen and save_error).
function incompleteText(meta) {
	// Another server's run whose server stopped before its end (--nats).
	if (meta.incomplete_reason && !meta.save_error) return t('status.replica_incomplete', { events: meta.events ?? '?' });
	return t('status.incomplete', { reason: meta.save_error || '?', stored: meta.events ?? 0, seen: meta.events_seen ?? '?' });
}

function setStatus(text, kind = '') {
	const el = $('run-status');
	el.textContent = text;
	el.dataset.kind = kind;
}

// A lab's form hints, with what this server says of bring-your-own-client
// runs: none here (--max-byo 0), and where they are (--byo-url).
function formHints(mod) {
	const hints = { ...(mod.formHints || {}) };
	const cfg = state.config || {};
	const lim = cfg.limits || {};
	if (hints.byo && (lim.max_byo === 0 || lim.max_byo_per_conn === 0))
		hints.byo = { ...hints.byo, off: true, url: cfg.byo_url || null };
	return hints;
}

function byoHost() {
	const b = state.config && state.config.byo_host;
	if (!b || b === '0.0.0.0' || b === '::' || b === '[::]') return location.hostname;
	return b;
}

// ---- the view area ----

function panes() {
	let main = $('pane-main');
	if (!main) {
		main = h('div', { class: 'pane', attrs: { id: 'pane-main' } });
		replace($('view'), main);
	}
	return main;
}

function showPlaceholder() {
	if (state.view) state.view.player.stop();
	state.view = null;
	closeCompare();
	replace(panes(), h('p', { class: 'empty', text: t('run.none') }));
	updateButtons();
}

function closeCompare() {
	if (state.compare) state.compare.player.stop();
	state.compare = null;
	const c = $('pane-compare');
	if (c) c.remove();
	$('view').classList.remove('comparing');
	markDifferences();
}

// Two runs of one lab side by side: every value of their summaries and
// parameters that differs is highlighted in both panes, the other run's
// value in its tooltip, and each summary says how many differ. Runs of two
// labs (UDP beside TCP) name their figures differently: they are paired
// message by message instead (pairs.js).
function markDifferences() {
	const panes = [$('pane-main'), $('pane-compare')].filter(Boolean);
	for (const p of panes) {
		for (const el of p.querySelectorAll('.cmp-diff')) {
			el.classList.remove('cmp-diff');
			el.removeAttribute('title');
		}
		for (const el of p.querySelectorAll('.cmp-note, .cmp-pairs-el')) el.remove();
	}
	state.pairs = null;
	if (panes.length < 2 || !state.view || !state.compare) return;
	if (state.view.lab !== state.compare.lab) {
		markMessages(panes);
		return;
	}
	const values = (p) => new Map([...p.querySelectorAll('[data-cmp]')].map((el) => [el.dataset.cmp, el]));
	const [a, b] = panes.map(values);
	const sums = panes.map((p) => p.querySelector('.run-summary:not([hidden])'));
	if (!sums[0] || !sums[1]) return;
	let n = 0;
	const params = new Set();
	for (const [k, x] of a) {
		const y = b.get(k);
		if (!y || x.textContent === y.textContent) continue;
		x.classList.add('cmp-diff');
		y.classList.add('cmp-diff');
		x.title = t('compare.other', { value: y.textContent });
		y.title = t('compare.other', { value: x.textContent });
		if (k.startsWith('param.')) params.add(k);
		else n++;
	}
	// Said above each pane's replay bar: the comparison is the page's, not
	// part of either run's view.
	for (const p of panes) {
		const player = p.querySelector(':scope > .player');
		if (player) player.before(h('p', { class: 'cmp-note', attrs: { role: 'status' }, text: n ? t('compare.differ', { n }) : t('compare.same') }));
	}
	// Parameters that differ are shown, not left folded away.
	if (params.size) for (const p of panes) for (const d of p.querySelectorAll('details.params')) d.open = true;
}

// UDP beside TCP on the same wire: udp-ping's probes and tcp-echo's
// messages paired by number, once both runs have ended (pairs.js).
function markMessages(panes) {
	const views = [state.view, state.compare];
	const u = views.findIndex((v) => v.lab === 'udp-ping');
	const tc = views.findIndex((v) => v.lab === 'tcp-echo');
	if (u < 0 || tc < 0) return;
	const res = pairUdpTcp(views[u].player.events, views[tc].player.events);
	if (!res) return;
	state.pairs = { udpPane: panes[u], tcpPane: panes[tc], res };
	showPairs(panes[u], panes[tc], res);
}

// A pane drew its view again (a step, a replay): its rows are new.
function remarkPairs() {
	const p = state.pairs;
	if (p && p.udpPane.isConnected && p.tcpPane.isConnected) markPairRows(p.udpPane, p.tcpPane, p.res);
}

// Replace a pane's view with a fresh player for run id of lab. opts.pane is
// 'main' (default) or 'compare' (a student's own run beside the class run).
// opts.title is a function giving the pane's title in the current language:
// it is called again when the language changes (relabel).
function openView(runId, lab, live, opts = {}) {
	const which = opts.pane === 'compare' ? 'compare' : 'view';
	if (state[which]) state[which].player.stop();
	let root;
	let title = null;
	if (which === 'compare') {
		root = $('pane-compare');
		if (!root) {
			root = h('div', { class: 'pane', attrs: { id: 'pane-compare' } });
			$('view').appendChild(root);
		}
		$('view').classList.add('comparing');
		title = { fn: opts.title || (() => t('class.mine')) };
		title.el = h('h2', { class: 'pane-title', text: title.fn() });
		replace(root, title.el);
	} else {
		root = panes();
		clear(root);
		if (opts.title) {
			title = { fn: opts.title };
			title.el = h('h2', { class: 'pane-title', text: title.fn() });
			root.appendChild(title.el);
		}
	}
	const mod = rendererFor(lab);
	const make = (stage, more) => mod.create(stage, {
		runId, lab, live, byoHost: byoHost(), eventsURL: runId ? eventsURL(runId) : null,
		config: state.config, runLab, ...more,
	});
	const player = new Player(root, make, {
		runId, lab, readOnly: !!opts.readOnly, onUser: opts.onUser, exportable: true,
	});
	player.onExport = exportRun;
	player.onDrawn = remarkPairs;
	player.onPresent = () => setPresenter(true);
	state[which] = { runId, lab, player, live, title };
	markCurrentRun();
	updateButtons();
	return state[which];
}

// The pane showing run id, if any.
function viewOf(id) {
	if (state.view && state.view.runId === id) return state.view;
	if (state.compare && state.compare.runId === id) return state.compare;
	return null;
}

// ---- the WebSocket ----

function onSocketStateText(s, retryS) {
	$('conn-text').textContent = s === 'open' ? t('conn.open')
		: s === 'closed' ? t('conn.closed', { s: retryS ?? 1 }) : t('conn.connecting');
}

function onSocketState(s, retryS) {
	const el = $('conn');
	// A new connection: the server says again if the link is still down.
	if (s === 'open') $('cluster-banner').hidden = true;
	el.dataset.state = s;
	onSocketStateText(s, retryS);
	if (s === 'open') resume();
	classroom.onSocketState(s);
	// A run asked for but not yet accepted is lost with the connection.
	if (s === 'closed' && state.live && !state.live.runId) {
		state.live = null;
		setStatus(t('status.lost'), 'error');
		if (state.form) state.form.setDisabled(false);
	}
	updateButtons();
}

// After a reconnect, follow again every run this page was following. The
// server forgets a connection's watches when it closes (and cancels the runs
// it owned), so each is watched anew; watch replays from the first event, so
// the stream and the view start afresh.
function resume() {
	for (const [id, st] of state.streams) {
		st.events = [];
		if (state.view && state.view.runId === id) openView(id, st.lab, true);
		state.socket.send({ op: 'watch', run: id });
	}
}

function onMessage(m) {
	if (!m || typeof m !== 'object') return;
	if (typeof m.seq === 'number' && m.run) {
		onRunEvent(m);
		return;
	}
	if (m.type === 'error' && classquiz.onError(m)) return;
	if (m.type === 'error' && classroom.onError(m)) return;
	if (typeof m.type === 'string' && m.type.startsWith('class.quiz') && classquiz.onMessage(m)) return;
	if (typeof m.type === 'string' && classroom.onMessage(m)) return;
	const live = state.live;
	switch (m.type) {
	case 'run.queued':
		// Every slot is taken: the run waits in the server's fair queue and
		// the page is told its place as it moves (then run.accepted).
		if (live && m.tag === live.tag) {
			live.queuedId = m.run;
			setStatus(m.ahead > 0 ? t('status.queued', { ahead: m.ahead, running: m.running, max: m.max_runs })
				: t('status.queued_next', { running: m.running, max: m.max_runs }));
			updateButtons();
			return;
		}
		break;
	case 'run.accepted':
		if (live && m.tag === live.tag) {
			onAccepted(live, m);
			return;
		}
		break;
	case 'error':
		if (live && !live.runId && (m.tag === live.tag || m.tag === undefined || m.tag === null)) {
			state.live = null;
			const shown = state.form.showServerError(m.param, m.message || m.code || '');
			setStatus(shown ? t('status.rejected_field')
				: t('status.rejected', { message: m.message || m.code || '' }), 'error');
			state.form.setDisabled(false);
			updateButtons();
			return;
		}
		if (m.run) state.streams.delete(m.run);
		setStatus(`${m.code || 'error'}: ${m.message || ''}`, 'error');
		break;
	case 'cancel.accepted':
		// A run that was still waiting leaves the queue; it never ran.
		if (m.queued && live && live.queuedId === m.run) {
			state.live = null;
			setStatus(t('status.queue_left'));
			state.form.setDisabled(false);
			updateButtons();
			return;
		}
		setStatus(t('status.cancelling'));
		return;
	case 'watch.accepted':
	case 'pong':
		return;
	case 'cluster':
		// --nats: this server says whether classes across servers work.
		$('cluster-banner').hidden = m.state !== 'degraded';
		return;
	case 'watch.incomplete':
		// Another server's run whose server stopped before run.end: shown
		// as incomplete (the frame says so), never as finished.
		state.streams.delete(m.run);
		if (live && live.runId === m.run) {
			state.live = null;
			state.form.setDisabled(false);
			updateButtons();
		}
		setStatus(t('status.replica_incomplete', { events: m.events ?? 0 }), 'error');
		// The run list says so too (it showed the run as running).
		refreshRuns();
		break;
	default:
		break;
	}
	// Anything else (an error about a cancel or a watch, a message type this
	// page does not know) is shown in the view, not dropped.
	if (m.run && viewOf(m.run)) viewOf(m.run).player.add(m);
	else if (state.view) state.view.player.add(m);
}

function onAccepted(live, m) {
	live.runId = m.run;
	const st = { lab: live.lab, events: live.pending.filter((ev) => ev.run === m.run) };
	live.pending = [];
	state.streams.set(m.run, st);
	// A run of this page's own replaces the view; two runs stand side by
	// side only when asked for (a view's "same path over TCP", a class).
	if (!state.cls && (live.viewOpts || {}).pane !== 'compare') closeCompare();
	const v = openView(m.run, live.lab, true, live.viewOpts || {});
	v.player.addAll(st.events);
	// Beside the run before: that pane is named too, so the two line up.
	if (!state.cls && (live.viewOpts || {}).pane === 'compare' && state.view && !state.view.title) {
		const lab = state.view.lab;
		const title = { fn: lab === live.lab ? () => t('compare.before_title') : () => tr(`lab.${lab}.title`, lab) };
		title.el = h('h2', { class: 'pane-title', text: title.fn() });
		$('pane-main').prepend(title.el);
		state.view.title = title;
	}
	const card = $('view').firstElementChild;
	if (card && card.getBoundingClientRect().top > window.innerHeight / 2) {
		card.scrollIntoView({ block: 'start', behavior: 'smooth' });
	}
	setStatus(t('status.running'));
	quiz.runStarted(m.run, live.lab);
	history.replaceState(null, '', `#/run/${encodeURIComponent(m.run)}`);
	updateButtons();
}

// Every event of a run this page follows: kept in its stream (so the run can
// be shown again while it goes on), and handed to the view when it shows it.
function onRunEvent(ev) {
	if (classroom.onEvent(ev)) return;
	const live = state.live;
	if (live && !live.runId) {
		live.pending.push(ev);
		return;
	}
	const st = state.streams.get(ev.run);
	if (st) st.events.push(ev);
	const v = viewOf(ev.run);
	if (v) v.player.add(ev);
	if (ev.type !== 'run.end') return;
	// Once a run has ended its record is on the server: stop keeping it here.
	state.streams.delete(ev.run);
	if (live && ev.run === live.runId) {
		state.live = null;
		setStatus(t('status.finished', { status: statusText(ev.status) }), ev.status === 'ok' ? 'ok' : 'error');
		state.form.setDisabled(false);
		updateButtons();
		quiz.runEnded(ev.run);
		// The events arrived; whether the server could keep them is in
		// the run's record.
		const id = ev.run;
		getJSON(`/api/runs/${encodeURIComponent(id)}`).then((meta) => {
			if (meta && meta.incomplete && !state.live) setStatus(incompleteText(meta), 'error');
		}).catch(() => {});
	}
	refreshRuns();
}

// ---- running ----

// A file's bytes as base64 (for an uploaded capture).
function fileBase64(file) {
	return file.arrayBuffer().then((buf) => {
		const bytes = new Uint8Array(buf);
		let bin = '';
		for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
		return btoa(bin);
	});
}

// beside: the run stands beside the one shown (its pane stays), to compare.
async function startRun(ev, { beside = false } = {}) {
	if (ev) ev.preventDefault();
	if (state.live || !state.lab) return;
	const values = state.form.collect();
	if (!values) {
		setStatus(t('form.fix_errors'), 'error');
		return;
	}
	if (!state.socket || !state.socket.open) {
		state.form.showFormError(t('conn.not_open'));
		return;
	}
	// A chosen capture is replayed: the server saves it and decodes it; the
	// live connection's parameters do not apply then.
	// A lab whose programs are typed in the page sends them along.
	const files = state.form.collectFiles ? state.form.collectFiles() : null;
	if (files === false) return;
	const file = state.form.uploadFile ? state.form.uploadFile() : null;
	let pcap = null;
	if (file) {
		if (file.size > state.form.uploadMax) {
			state.form.showFormError(t('form.upload_too_big', {
				size: (file.size / 1024).toFixed(1), max: Math.round(state.form.uploadMax / 1024) }));
			return;
		}
		pcap = await fileBase64(file);
		if (state.live) return;
	}
	const tag = `t${++state.tagSeq}`;
	state.live = { tag, runId: null, lab: state.lab.name, pending: [], viewOpts: classroom.viewOpts() };
	if (beside && !state.cls) state.live.viewOpts = { ...(state.live.viewOpts || {}), pane: 'compare', title: () => t('compare.beside_title') };
	const op = { op: classroom.runOp(), lab: state.lab.name, params: pcap ? {} : values, tag };
	if (pcap) op.pcap = pcap;
	if (files) op.files = files;
	state.socket.send(op);
	state.form.setDisabled(true);
	setStatus(t('status.starting'));
	updateButtons();
}

// Start another lab with these parameters, as if typed into its form (a view's
// "same path over TCP" button). False when a run of this page is still going.
// The new run stands beside the view that asked for it (UDP beside TCP on
// the same wire), not in its place.
function runLab(lab, params) {
	if (state.live || !state.labs.some((l) => l.name === lab)) return false;
	const beside = state.view ? { pane: 'compare', title: () => tr(`lab.${lab}.title`, lab) } : null;
	selectLab(lab, false);
	history.replaceState(null, '', `#/lab/${encodeURIComponent(lab)}`);
	state.form.setValues(params);
	startRun(null);
	if (state.live && beside && !state.cls) state.live.viewOpts = { ...(state.live.viewOpts || {}), pane: 'compare', title: beside.title };
	return !!state.live;
}

// A student's "try it myself": the class run's lab and parameters, run now.
function tryRun(lab, params, files) {
	if (state.live) return;
	if (!state.labs.some((l) => l.name === lab)) return;
	selectLab(lab, false);
	state.form.resetDefaults();
	state.form.setValues(params);
	if (files) state.form.setFiles(files);
	startRun({ preventDefault() {} });
}

// Open a run file saved with "Export" (validated before it is shown).
async function openBundleFile(file) {
	let b;
	try {
		b = await importBundleFile(file);
	} catch (e) {
		setStatus(t('bundle.refused', { reason: e.message }), 'error');
		return;
	}
	const labName = b.meta.lab;
	if (labName && state.labs.some((l) => l.name === labName) && (!state.lab || state.lab.name !== labName)) {
		selectLab(labName, false);
	}
	const v = openView(b.meta.id, labName, false, { title: () => t('bundle.title', { name: file.name }) });
	v.player.addAll(b.events);
	// Not on the server: the quiz sends these events to be graded.
	quiz.viewing(b.meta.id, labName, b.events.some((e) => e && e.type === 'run.end'), b.events);
	setStatus(t('bundle.opened', { name: file.name, n: b.events.length }));
}

function cancelRun() {
	const live = state.live;
	const id = live && (live.runId || live.queuedId);
	if (!id) return;
	state.socket.send({ op: 'cancel', run: id });
	setStatus(t('status.cancelling'));
}

function updateButtons() {
	const live = state.live;
	$('run-btn').disabled = !!live || !state.lab;
	$('cancel-btn').disabled = !(live && (live.runId || live.queuedId));
	$('reset-btn').disabled = !!live;
	// "Run beside this one": the shown run of this lab stays, the new run
	// stands beside it (Nagle on against off, a loss against none), outside
	// a class (a student's "try it myself" does that there).
	const beside = $('beside-btn');
	beside.hidden = !(state.lab && state.view && state.view.lab === state.lab.name && !state.cls);
	beside.disabled = !!live;
	document.body.classList.toggle('running', !!live);
}

// ---- catalogue and form ----

function renderCatalogue() {
	const ul = $('catalogue');
	clear(ul);
	if (!state.labs.length) {
		ul.appendChild(h('li', { class: 'muted', text: t('catalogue.empty') }));
		return;
	}
	for (const lab of state.labs) {
		const btn = h('button', {
			class: 'lab-item', attrs: { type: 'button', 'data-lab': lab.name },
			on: { click: () => selectLab(lab.name, true) },
		}, h('span', { class: 'lab-name', text: tr(`lab.${lab.name}.title`, lab.title || lab.name) }),
		h('span', { class: 'lab-summary', text: tr(`lab.${lab.name}.summary`, lab.summary || '') }));
		ul.appendChild(h('li', {}, btn));
	}
}

function selectLab(name, userAction) {
	const lab = state.labs.find((l) => l.name === name);
	if (!lab) return;
	const changed = !state.lab || state.lab.name !== name;
	state.lab = lab;
	for (const b of document.querySelectorAll('.lab-item')) {
		if (b.dataset.lab === name) b.setAttribute('aria-current', 'true');
		else b.removeAttribute('aria-current');
	}
	$('lab-title').textContent = tr(`lab.${lab.name}.title`, lab.title || lab.name);
	$('lab-summary').textContent = tr(`lab.${lab.name}.summary`, lab.summary || '');
	showLesson(lab.name);
	$('lab-card').hidden = false;
	const mod = rendererFor(lab.name);
	state.form = buildForm($('form-fields'), lab, formHints(mod));
	state.form.setDisabled(!!state.live);
	quiz.setLab(lab, state.form);
	classquiz.rerender();
	if (changed && userAction && (!state.view || state.view.lab !== name)) showPlaceholder();
	if (userAction) history.replaceState(null, '', `#/lab/${encodeURIComponent(name)}`);
	setStatus(state.live ? t('status.running') : t('status.idle'));
	updateButtons();
}

// The lab opens as a lesson: what it teaches and what to look for, above
// its knobs (labs without these texts show their summary only).
function showLesson(name) {
	const el = $('lab-lesson');
	if (!has(`lab.${name}.lesson`)) {
		el.hidden = true;
		return;
	}
	replace(el,
		h('p', {}, h('strong', { text: `${t('lesson.heading')}: ` }), t(`lab.${name}.lesson`)),
		has(`lab.${name}.look`) ? h('p', {}, h('strong', { text: `${t('lesson.look')} ` }), t(`lab.${name}.look`)) : null);
	el.hidden = false;
}

// ---- recent runs ----

function markCurrentRun() {
	const id = state.view && state.view.runId;
	for (const b of document.querySelectorAll('.run-item')) {
		if (id && b.dataset.run === id) b.setAttribute('aria-current', 'true');
		else b.removeAttribute('aria-current');
	}
}

function runList(data) {
	if (Array.isArray(data)) return data;
	if (data && Array.isArray(data.runs)) return data.runs;
	return [];
}

function runId(r) {
	return r.id ?? r.run;
}

function fmtWhen(r) {
	const v = r.started ?? r.started_at ?? r.start ?? r.created ?? r.time;
	if (v === undefined || v === null) return '';
	const d = typeof v === 'number' ? new Date(v > 1e12 ? v : v * 1000) : new Date(v);
	return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleTimeString();
}

async function refreshRuns() {
	const ul = $('runs');
	let runs;
	try {
		runs = runList(await getJSON('/api/runs'));
	} catch (e) {
		replace(ul, h('li', { class: 'muted', text: t('app.load_failed', { what: '/api/runs', reason: e.message }) }));
		return;
	}
	clear(ul);
	if (!runs.length) {
		ul.appendChild(h('li', { class: 'muted', text: t('runs.empty') }));
		return;
	}
	for (const r of runs.slice(0, 50)) {
		const id = runId(r);
		if (!id) continue;
		const status = String(r.status || 'running');
		const st = status.replace(/[^a-z]/g, '');
		ul.appendChild(h('li', {}, h('button', {
			class: 'run-item', attrs: { type: 'button', 'data-run': id, title: t('runs.open', { id }) },
			on: { click: () => openRun(id, r.lab, status, r) },
		},
		h('span', { class: 'run-item-top' },
			h('span', { class: 'run-lab', text: r.lab || '' }),
			h('span', { class: `pill pill-${st}`, text: statusText(status) }),
			// A bundle not saved whole; another server's run without an
			// end (--nats) already says "incomplete" in its status.
			r.incomplete && status !== 'incomplete' ? h('span', { class: 'pill pill-error', text: t('runs.incomplete'), attrs: { title: incompleteText(r) } }) : null),
		h('span', { class: 'run-item-bottom' },
			h('code', { class: 'run-id', text: id }),
			h('span', { class: 'muted', text: [fmtWhen(r), typeof r.events === 'number' && !(r.remote && (status === 'running' || status === 'incomplete')) ? t('runs.events', { n: r.events }) : '']
				.filter(Boolean).join(' · ') })))));
	}
	markCurrentRun();
}

// Show a past or running run: a running one is followed live over the
// WebSocket, a finished one is read from its events file.
async function openRun(id, lab, status, meta = null) {
	history.replaceState(null, '', `#/run/${encodeURIComponent(id)}`);
	if (!status) {
		try {
			const info = await getJSON(`/api/runs/${encodeURIComponent(id)}`);
			meta = info;
			status = info.status;
			lab = lab || info.lab;
		} catch {
			status = 'finished';
		}
	}
	const st = state.streams.get(id);
	if (st) {
		// Already followed here: show what has arrived, then the rest live.
		openView(id, st.lab, true).player.addAll(st.events);
		setStatus(t('status.replaying', { id }));
		return;
	}
	if (status === 'running') {
		// Followed live; if the socket is not open yet, resume() sends the
		// watch once it is.
		const labName = lab || (state.lab && state.lab.name) || '';
		state.streams.set(id, { lab: labName, events: [] });
		openView(id, labName, true);
		if (state.socket && state.socket.open) state.socket.send({ op: 'watch', run: id });
		setStatus(t('status.replaying', { id }));
		return;
	}
	setStatus(t('status.loading_run', { id }));
	let events;
	try {
		events = await getRunEvents(id);
	} catch (e) {
		setStatus(t('app.load_failed', { what: id, reason: e.message }), 'error');
		return;
	}
	const first = events.find((e) => e && e.lab);
	const labName = lab || (first && first.lab) || '';
	if (labName && state.labs.some((l) => l.name === labName) && (!state.lab || state.lab.name !== labName)) {
		selectLab(labName, false);
	}
	// A bundle the server could not store whole shows only its first
	// events: say so above them (its last state is not the run's end).
	const v = openView(id, labName, false, meta && meta.incomplete ? { title: () => incompleteText(meta) } : {});
	v.player.addAll(events);
	quiz.viewing(id, labName, events.some((e) => e && e.type === 'run.end'));
	if (!state.live) {
		if (meta && meta.incomplete) setStatus(incompleteText(meta), 'error');
		else setStatus(t('status.replaying', { id }));
	}
}

// ---- start-up ----

function route() {
	const m = /^#\/(lab|run)\/(.+)$/.exec(location.hash);
	if (m && m[1] === 'run') {
		openRun(decodeURIComponent(m[2]), null, null);
		return null;
	}
	return m ? decodeURIComponent(m[2]) : null;
}

// ---- presenter mode ----
//
// Nothing on screen but the lab view, in large type and high contrast, for a
// projector; the keyboard drives the main pane's player (for an instructor in
// a class, that drives every student's view too): space play/pause, arrows
// step, + and - speed, f full screen, Escape leaves.

function setPresenter(on) {
	document.body.classList.toggle('presenter', on);
	// Views whose drawing measured their text (the handshake ladder's label
	// boxes) measure it again at presenter sizes.
	document.dispatchEvent(new CustomEvent('socklab:presenter', { detail: on }));
	if (!on && document.fullscreenElement) document.exitFullscreen().catch(() => {});
	if (on) window.scrollTo(0, 0);
}

function presenterKey(e) {
	if (!document.body.classList.contains('presenter')) return;
	if (e.target && /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
	if (e.ctrlKey || e.metaKey || e.altKey) return;
	const p = state.view && state.view.player;
	const act = {
		' ': () => p && p.user(() => p.toggle()),
		ArrowLeft: () => p && p.user(() => p.step(-1)),
		ArrowRight: () => p && p.user(() => p.step(1)),
		ArrowUp: () => p && p.user(() => p.step(-1)),
		ArrowDown: () => p && p.user(() => p.step(1)),
		'+': () => p && p.user(() => p.speedStep(1)),
		'=': () => p && p.user(() => p.speedStep(1)),
		'-': () => p && p.user(() => p.speedStep(-1)),
		f: () => (document.fullscreenElement ? document.exitFullscreen()
			: document.documentElement.requestFullscreen()).catch(() => {}),
		Escape: () => setPresenter(false),
	}[e.key];
	if (!act) return;
	e.preventDefault();
	act();
}

// The language changed: every text on the page is drawn again in it.
function relabel() {
	applyI18n(document);
	$('lang-select').value = currentLang();
	if (state.config && state.config.version) $('version').textContent = t('app.version', { version: state.config.version });
	renderCatalogue();
	if (state.lab) {
		const values = state.form ? state.form.collect() : null;
		selectLab(state.lab.name, false);
		if (values) state.form.setValues(values);
		if (state.form) state.form.clearErrors();
	}
	classroom.rerender();
	classquiz.rerender();
	for (const v of [state.view, state.compare]) {
		if (!v) continue;
		v.player.relabel();
		if (v.title) v.title.el.textContent = v.title.fn();
	}
	if (!state.view) showPlaceholder();
	const c = $('conn');
	if (c.dataset.state) onSocketStateText(c.dataset.state);
	refreshRuns();
	setStatus(state.live ? t('status.running') : t('status.idle'));
}

function buildLangSelect() {
	const sel = $('lang-select');
	clear(sel);
	for (const l of LANGS) sel.appendChild(h('option', { attrs: { value: l.tag, lang: l.tag }, text: l.name }));
	sel.value = currentLang();
	sel.addEventListener('change', () => setLang(sel.value, { remember: true }));
}

async function main() {
	try {
		await loadTranslations();
	} catch (e) {
		replace($('view'), h('p', { class: 'callout callout-error', text: `Could not load the translations: ${e.message}` }));
		return;
	}
	setLang(preferredLang(navigator.languages || [navigator.language]));
	applyI18n(document);
	buildLangSelect();
	onLangChange(relabel);
	document.addEventListener('keydown', presenterKey);
	$('run-form').addEventListener('submit', startRun);
	$('view').addEventListener('socklab:summary', markDifferences);
	$('cancel-btn').addEventListener('click', cancelRun);
	$('beside-btn').addEventListener('click', () => startRun(null, { beside: true }));
	$('reset-btn').addEventListener('click', () => state.form && state.form.resetDefaults());
	$('runs-refresh').addEventListener('click', refreshRuns);
	showPlaceholder();
	quiz.init({ getView: () => state.view });

	try {
		const [config, labs] = await Promise.all([getJSON('/api/config'), getJSON('/api/labs')]);
		state.config = config;
		state.labs = Array.isArray(labs) ? labs : [];
	} catch (e) {
		replace($('view'), h('p', { class: 'callout callout-error', text: t('app.load_failed', { what: 'the lab list', reason: e.message }) }));
		return;
	}
	if (state.config.version) $('version').textContent = t('app.version', { version: state.config.version });
	renderCatalogue();
	classquiz.init({ state, send: (obj) => !!state.socket && state.socket.send(obj) });
	classroom.init({
		state, openView, viewOf, tryRun, selectLab,
		send: (obj) => !!state.socket && state.socket.send(obj),
		onClassChange: () => {
			classquiz.classChanged();
			const teaching = state.cls && state.cls.role === 'teacher';
			$('run-btn').textContent = t(teaching ? 'class.run_button' : 'form.run');
		},
	});
	$('bundle-file').addEventListener('change', (e) => {
		const f = e.target.files && e.target.files[0];
		if (f) openBundleFile(f);
		e.target.value = '';
	});
	state.socket = new LiveSocket(wsURL(state.config), state.config.ws_protocol || 'socklab.v1', {
		onMessage, onState: onSocketState,
	});
	const want = route();
	if (state.labs.length) selectLab(want && state.labs.some((l) => l.name === want) ? want : state.labs[0].name, false);
	refreshRuns();
	// Runs started elsewhere (another student, the instructor) appear by themselves.
	setInterval(() => {
		if (!document.hidden) refreshRuns();
	}, RUNS_REFRESH_MS);
	document.body.classList.add('ready');
}

main();

// quiz.js: "predict, then check": the lab's questions before Run, each graded by the server against the run's own events afterwards, with the evidence marked in the view.
//
// The questions come with the lab's schema (GET /api/labs: "questions"),
// their texts from the translation tables (quiz.LAB.QID...). Grading is the
// server's (GET /api/runs/ID/grade, the same C code as `socklab grade`;
// a run opened from a file is sent with the answers, POST /api/grade): the
// page never decides a verdict itself. A question is asked only when the
// form's parameters make it apply ("when"); changing a knob after a verdict
// asks again for the next run. A finished run opened from Recent runs (a
// replay) can be checked the same way.

import { t, has } from './i18n.js';
import { h, clear, replace } from './dom.js';

const q$ = {
	card: null,
	lab: null,        // the lab descriptor
	form: null,       // its form controller (collect())
	answers: {},      // qid -> string as typed / chosen
	verdicts: null,   // {run, list} once graded
	target: null,     // the finished run in the view that can be graded: {run, lab}
	pendingRun: null, // a run this page started, to grade when it ends
	getView: () => null,
	marked: [],       // elements outlined as evidence
	focus: null,      // the verdict whose evidence is shown
	observer: null,
	lastParams: '',
	busy: false,
};

function ensureStyle() {
	if (document.querySelector('link[data-view="quiz"]')) return;
	document.head.appendChild(h('link', { attrs: { rel: 'stylesheet', href: '/quiz.css', 'data-view': 'quiz' } }));
}

// Call once at start-up. opts.getView() returns the pane showing a run
// ({runId, lab, player}).
export function init(opts) {
	ensureStyle();
	q$.getView = opts.getView;
	const labCard = document.getElementById('lab-card');
	q$.card = h('section', { class: 'card quiz-card', attrs: { id: 'quiz-card', 'aria-labelledby': 'quiz-title' } });
	q$.card.hidden = true;
	labCard.after(q$.card);
	const form = document.getElementById('run-form');
	const changed = () => paramsChanged();
	form.addEventListener('input', changed);
	form.addEventListener('change', changed);
	// The view is rebuilt as a replay moves: mark the evidence again.
	q$.observer = new MutationObserver(() => {
		if (q$.focus) requestAnimationFrame(markEvidence);
	});
	q$.observer.observe(document.getElementById('view'), { childList: true, subtree: true });
	// Pick from the trace: a segment clicked on a run's ladder answers the
	// "which segment" question being asked (the ladder's own click still
	// selects the packet).
	document.getElementById('view').addEventListener('click', (e) => {
		const seg = e.target.closest && e.target.closest('.hs-seg[data-n]');
		if (!seg || q$.verdicts || !q$.lab) return;
		const q = questionsOf(q$.lab).find((x) => x.kind === 'pick' && x.pick === 'segment' && applies(x, params()));
		if (!q) return;
		q$.answers[q.id] = String(seg.dataset.n);
		const input = document.getElementById(`quiz-${q.id}`);
		if (input) input.value = seg.dataset.n;
		const btn = document.getElementById('quiz-check');
		if (btn) btn.disabled = false;
		setMsg(t('quiz.picked', { n: seg.dataset.n }));
	});
}

function questionsOf(lab) {
	return (lab && Array.isArray(lab.questions)) ? lab.questions : [];
}

// Does question q apply to these parameter values (the form's)?
export function applies(q, params) {
	const w = q.when;
	if (!w || !params || !(w.param in params)) return true;
	const v = params[w.param];
	if (Array.isArray(w.in)) return w.in.includes(String(v));
	if (typeof w.min === 'number') return Number(v) >= w.min;
	return true;
}

function params() {
	try {
		return q$.form ? q$.form.collect() : {};
	} catch {
		return {};
	}
}

function key(q, sub) {
	return `quiz.${q$.lab.name}.${q.id}${sub ? `.${sub}` : ''}`;
}

// The lab selected in the form changed (or was built again).
export function setLab(lab, form) {
	const same = q$.lab && lab && q$.lab.name === lab.name;
	q$.lab = lab;
	q$.form = form;
	if (!same) {
		q$.answers = {};
		q$.verdicts = null;
		q$.target = null;
		unmark();
	}
	if (!same) q$.lastParams = JSON.stringify(params());
	render();
}

// A knob changed: a verdict belongs to the run it graded, so ask again.
function paramsChanged() {
	const p = JSON.stringify(params());
	if (p === q$.lastParams) return;
	q$.lastParams = p;
	if (q$.verdicts) {
		q$.verdicts = null;
		q$.answers = {};
		q$.reasked = true;
		unmark();
	}
	render();
}

// This page started run id of lab: it is graded when it ends.
export function runStarted(id, lab) {
	if (!q$.lab || q$.lab.name !== lab) return;
	q$.pendingRun = id;
	q$.verdicts = null;
	q$.target = null;
	unmark();
	render();
}

// Run id ended (its run.end arrived).
export function runEnded(id) {
	if (q$.pendingRun !== id) return;
	q$.pendingRun = null;
	q$.target = { run: id, lab: q$.lab.name };
	if (answered().length) grade();
	else render();
}

// A finished run of lab is shown (a replay): it can be checked. events: the
// run's events when it was opened from a file (the server does not keep
// it): they are sent with the answers (POST /api/grade).
export function viewing(id, lab, finished, events = null) {
	if (!q$.lab || q$.lab.name !== lab || !finished) return;
	if (q$.target && q$.target.run === id && !events) return;
	q$.target = { run: id, lab, events };
	q$.verdicts = null;
	unmark();
	render();
}

function answered() {
	return Object.entries(q$.answers).filter(([, v]) => v !== '' && v !== undefined && v !== null);
}

async function grade() {
	const target = q$.target;
	if (!target || q$.busy) return;
	q$.busy = true;
	const qs = new URLSearchParams();
	for (const [k, v] of answered()) qs.append(k, String(v));
	qs.append('lang', document.documentElement.lang === 'zh-CN' ? 'zh-CN' : 'en');
	setMsg(t('quiz.grading'));
	try {
		const resp = target.events
			? await fetch(`/api/grade?${qs}`, {
				method: 'POST', cache: 'no-store', headers: { 'Content-Type': 'application/x-ndjson' },
				body: target.events.map((e) => JSON.stringify(e)).join('\n') + '\n',
			})
			: await fetch(`/api/runs/${encodeURIComponent(target.run)}/grade?${qs}`, { cache: 'no-store' });
		const r = await resp.json().catch(() => ({}));
		if (!resp.ok) {
			const err = new Error((r.error && r.error.message) || `HTTP ${resp.status}`);
			err.status = resp.status;
			throw err;
		}
		q$.verdicts = { run: target.run, list: Array.isArray(r.verdicts) ? r.verdicts : [] };
		q$.reasked = false;
		q$.busy = false;
		render();
		const first = q$.verdicts.list.find((v) => v.answer !== null && (v.evidence || []).length);
		if (first) showEvidence(first);
	} catch (e) {
		q$.busy = false;
		render();
		setMsg(t('quiz.grade_failed', { error: e.message }), 'error');
	}
}

function setMsg(text, kind = '') {
	const el = q$.card && q$.card.querySelector('.quiz-msg');
	if (!el) return;
	el.textContent = text;
	el.dataset.kind = kind;
}

// ---- drawing ----

export function relabel() {
	render();
}

function render() {
	const card = q$.card;
	if (!card) return;
	const lab = q$.lab;
	const all = questionsOf(lab);
	if (!lab || !all.length) {
		card.hidden = true;
		clear(card);
		return;
	}
	card.hidden = false;
	const p = params();
	const shown = q$.verdicts
		? q$.verdicts.list.map((v) => ({ q: all.find((x) => x.id === v.q), v })).filter((x) => x.q)
		: all.filter((q) => applies(q, p)).map((q) => ({ q, v: null }));
	const head = h('div', { class: 'quiz-head' },
		h('h3', { class: 'quiz-title', attrs: { id: 'quiz-title' }, text: t('quiz.title') }),
		h('p', { class: 'quiz-intro', text: q$.reasked && !q$.verdicts ? t('quiz.reasked') : t('quiz.intro') }));
	const list = h('ol', { class: 'quiz-list' });
	for (const { q, v } of shown) list.appendChild(v ? verdictItem(q, v) : askItem(q));
	if (!shown.length) list.appendChild(h('li', { class: 'muted', text: t('quiz.none_apply') }));
	const actions = h('div', { class: 'quiz-actions' });
	if (q$.target && !q$.verdicts && !q$.pendingRun) {
		actions.appendChild(h('button', {
			class: 'btn btn-small btn-primary', attrs: { type: 'button', id: 'quiz-check', disabled: !answered().length },
			text: t('quiz.check', { run: q$.target.run }), on: { click: grade },
		}));
	}
	if (answered().length || q$.verdicts) {
		actions.appendChild(h('button', {
			class: 'btn btn-small btn-ghost', attrs: { type: 'button', id: 'quiz-clear' }, text: t('quiz.clear'),
			on: { click: () => { q$.answers = {}; q$.verdicts = null; unmark(); render(); } },
		}));
	}
	let summary = null;
	if (q$.verdicts) {
		const graded = q$.verdicts.list.filter((v) => v.answer !== null);
		summary = h('p', { class: 'quiz-summary', text: t('quiz.checked', {
			run: q$.verdicts.run, right: graded.filter((v) => v.result === 'right').length, answered: graded.length }) });
	}
	replace(card, head, list, summary, actions, h('p', { class: 'quiz-msg', attrs: { role: 'status', 'aria-live': 'polite' } }));
	card.dataset.state = q$.verdicts ? 'graded' : 'asking';
}

function askItem(q) {
	const id = `quiz-${q.id}`;
	const val = q$.answers[q.id] ?? '';
	let input;
	const set = (v) => {
		q$.answers[q.id] = v;
		const btn = document.getElementById('quiz-check');
		if (btn) btn.disabled = !answered().length;
	};
	if (q.kind === 'choice') {
		input = h('div', { class: 'quiz-choices', attrs: { role: 'radiogroup', 'aria-labelledby': `${id}-q` } },
			q.choices.map((c) => h('label', { class: 'quiz-choice' },
				h('input', { attrs: { type: 'radio', name: id, value: c, checked: val === c }, on: { change: () => set(c) } }),
				h('span', { text: has(key(q, `c.${c}`)) ? t(key(q, `c.${c}`)) : c }))));
	} else {
		const label = q.kind === 'pick' ? t('quiz.pick_segment') : (q.unit && has(`quiz.unit.${q.unit}`) ? t(`quiz.unit.${q.unit}`) : '');
		input = h('label', { class: 'quiz-number' },
			q.kind === 'pick' ? h('span', { text: label }) : null,
			h('input', { attrs: { type: 'number', id, min: q.min, max: q.max, step: 1, value: val, inputmode: 'numeric', 'aria-labelledby': `${id}-q` },
				on: { input: (e) => set(e.target.value.trim()) } }),
			q.kind !== 'pick' ? h('span', { text: label }) : null,
			h('span', { class: 'muted', text: ` (${t('quiz.range', { min: q.min, max: q.max })})` }));
	}
	return h('li', { class: 'quiz-q', dataset: { q: q.id, kind: q.kind } },
		h('p', { class: 'quiz-text', attrs: { id: `${id}-q` }, text: t(key(q)) }),
		input,
		q.kind === 'pick' ? h('p', { class: 'muted quiz-hint', text: t('quiz.pick_hint') }) : null);
}

function valueText(q, v) {
	if (v === null || v === undefined) return t('quiz.no_answer');
	if (Array.isArray(v)) return v.map((n) => `#${n}`).join(', ');
	if (q.kind === 'choice') return has(key(q, `c.${v}`)) ? t(key(q, `c.${v}`)) : String(v);
	if (q.kind === 'pick') return `#${v}`;
	return String(v);
}

// The explanation in the page's language, from its id and the captured
// values the server put in its parameters.
function whyText(v) {
	const w = v.why || {};
	const p = { ...(w.params || {}) };
	return w.key && has(w.key) ? t(w.key, p) : (w.text || '');
}

function verdictItem(q, v) {
	const res = v.answer === null && v.result !== 'undecided' ? 'unanswered' : v.result;
	const ev = Array.isArray(v.evidence) ? v.evidence : [];
	const chips = ev.slice(0, 40).map((seq) => h('button', {
		class: 'quiz-ev-chip', attrs: { type: 'button', title: describe(seq) }, dataset: { seq: String(seq) },
		text: describe(seq), on: { click: () => { showEvidence(v); step(seq); } },
	}));
	return h('li', { class: `quiz-q quiz-${res}`, dataset: { q: q.id, result: res } },
		h('p', { class: 'quiz-text' },
			h('span', { class: `quiz-badge quiz-badge-${res}`, text: t(`quiz.result.${res}`) }), ' ', t(key(q))),
		h('dl', { class: 'quiz-vals' },
			h('dt', { text: t('quiz.your_answer') }), h('dd', { class: 'quiz-answer', text: valueText(q, v.answer) }),
			h('dt', { text: t('quiz.the_run') }), h('dd', { class: 'quiz-truth', text: valueText(q, v.truth) })),
		h('p', { class: 'quiz-why', text: whyText(v) }),
		ev.length ? h('div', { class: 'quiz-evidence' },
			h('span', { class: 'muted', text: t('quiz.evidence', { list: '' }).replace(/[\s:：]+$/, '') }), ' ', chips,
			h('button', { class: 'btn btn-small btn-ghost', attrs: { type: 'button' }, text: t('quiz.show_evidence'), on: { click: () => showEvidence(v) } }))
			: null);
}

// ---- evidence in the view ----

function viewEvents() {
	const v = q$.getView();
	return v && v.player && Array.isArray(v.player.events) ? v.player.events : [];
}

function eventAt(seq) {
	const evs = viewEvents();
	const e = evs[seq];
	if (e && e.seq === seq) return e;
	return evs.find((x) => x && x.seq === seq) || null;
}

// A short line for an evidence event, from its own fields.
function describe(seq) {
	const e = eventAt(seq);
	if (!e) return `#${seq}`;
	switch (e.type) {
	case 'segment':
		if (e.n !== undefined) return `${seq}: #${e.n} ${e.from || e.dir || ''} [${(e.flags || []).join(',')}]`;
		return `${seq}: ${e.dir || ''} ${e.bytes ?? ''} B`;
	case 'syscall': return `${seq}: ${e.who || ''} ${e.call}() = ${e.ret}`;
	case 'probe': return `${seq}: probe ${e.probe} ${e.status}`;
	case 'recv': return `${seq}: recv ${e.i} ${e.bytes} B`;
	case 'frame': return `${seq}: #${e.n} ${e.port || ''} ${e.proto || ''}`;
	case 'neigh': return `${seq}: ${e.host} ${e.peer || e.ip} ${e.to}`;
	case 'observation':
	case 'timer': return `${seq}: ${e.who} ${e.state} (${e.source})`;
	default: return `${seq}: ${e.type}`;
	}
}

// Where the lab's view draws event e.
function selectorsFor(e) {
	const s = [`[data-seq="${e.seq}"]`];
	if (e.type === 'segment' && e.n !== undefined) s.push(`.hs-seg[data-n="${e.n}"]`);
	if (e.type === 'segment' && e.i !== undefined) s.push(`.stk-lane-segment [data-i="${e.i}"]`, `.stk-lane-ack [data-i="${e.i}"]`);
	if (e.type === 'recv' && e.i !== undefined) s.push(`.stk-lane-recv [data-i="${e.i}"]`);
	if (e.type === 'probe') s.push(`.prow[data-probe="${e.probe}"]`);
	if (e.type === 'frame' && e.n !== undefined) s.push(`.ly-frame[data-n="${e.n}"]`);
	return s;
}

function unmark() {
	for (const el of q$.marked) el.classList.remove('quiz-ev');
	q$.marked = [];
	q$.focus = null;
}

function markEvidence() {
	for (const el of q$.marked) el.classList.remove('quiz-ev');
	q$.marked = [];
	const v = q$.focus;
	const root = document.getElementById('view');
	if (!v || !root) return;
	for (const seq of v.evidence || []) {
		const e = eventAt(seq) || { seq };
		for (const sel of selectorsFor(e)) {
			for (const el of root.querySelectorAll(sel)) {
				el.classList.add('quiz-ev');
				q$.marked.push(el);
			}
		}
	}
}

function showEvidence(v) {
	q$.focus = v;
	markEvidence();
	const first = q$.marked[0];
	if (first && first.scrollIntoView) {
		const r = first.getBoundingClientRect();
		if (r.top < 0 || r.bottom > window.innerHeight) first.scrollIntoView({ block: 'center' });
	}
}

// Outline these events of the run in the view (a class question's evidence).
export function markSeqs(evidence) {
	showEvidence({ evidence: Array.isArray(evidence) ? evidence : [] });
}

// Move the replay to just after event seq.
function step(seq) {
	const v = q$.getView();
	if (!v || !v.player) return;
	const idx = v.player.events.findIndex((e) => e && e.seq === seq);
	if (idx >= 0) v.player.seek(idx + 1, true);
}

// For tests and the class code: the current state.
export function snapshot() {
	return { lab: q$.lab && q$.lab.name, answers: { ...q$.answers }, verdicts: q$.verdicts, target: q$.target };
}

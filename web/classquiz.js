// classquiz.js: a question for the whole class: the instructor poses it (from the lab's bank or free), sees the live distribution, closes the vote, runs the lab for the class and reveals; each student answers and sees their own answer graded against the class run.
//
// The server keeps the question, the answers and the grading (op
// class.quiz, server/ws_quiz.c); this module only shows them. Names are
// hidden on the instructor's chart until "Show names" is ticked; students
// never receive anyone else's answer.

import { t, has } from './i18n.js';
import { h, replace } from './dom.js';
import { markSeqs } from './quiz.js';

let app = null;
let tagSeq = 0;
const cq = {
	card: null,
	question: null, // {id, state, question}
	tally: null,
	revealed: null,
	result: null,   // a student's own verdict
	mine: null,     // a student's answer as the server acknowledged it
	draft: '',      // a student's answer being chosen
	showNames: false,
	csv: null,
};

const $ = (id) => document.getElementById(id);

export function init(a) {
	app = a;
	cq.card = h('section', { class: 'card cq-card', attrs: { id: 'cq-card', 'aria-labelledby': 'cq-title' } });
	cq.card.hidden = true;
	$('lab-card').before(cq.card);
	render();
}

function role() {
	const c = app.state.cls;
	return c ? c.role : null;
}

function send(op) {
	const tag = `z${++tagSeq}`;
	if (!app.send({ op: 'class.quiz', ...op, tag })) {
		say(t('conn.not_open'), 'error');
		return null;
	}
	return tag;
}

function say(text, kind = '') {
	const el = cq.card && cq.card.querySelector('.cq-msg');
	if (!el) return;
	el.textContent = text;
	el.dataset.kind = kind;
}

export function onError(m) {
	if (!(typeof m.tag === 'string' && m.tag.startsWith('z'))) return false;
	say(m.param ? t('cq.error_param', { param: m.param, message: m.message || m.code }) : (m.message || m.code), 'error');
	return true;
}

export function onMessage(m) {
	switch (m.type) {
	case 'class.quiz':
		if (!cq.question || cq.question.id !== m.id) {
			cq.tally = null;
			cq.revealed = null;
			cq.result = null;
			cq.mine = null;
			cq.draft = '';
			cq.csv = null;
		}
		cq.question = m;
		render();
		return true;
	case 'class.quiz.tally':
		cq.tally = m;
		render();
		return true;
	case 'class.quiz.answered':
		cq.mine = m.answer;
		render();
		say(t('cq.answer_sent'));
		return true;
	case 'class.quiz.result':
		cq.result = m;
		render();
		if (m.verdict && Array.isArray(m.verdict.evidence)) markSeqs(m.verdict.evidence);
		return true;
	case 'class.quiz.revealed':
		cq.revealed = m;
		render();
		return true;
	case 'class.quiz.csv':
		download(m.csv, `socklab-class-question-${m.id}.csv`);
		return true;
	case 'class.quiz.done':
		say('');
		return true;
	default:
		return false;
	}
}

// The class ended or the page left it.
export function classChanged() {
	if (app && !app.state.cls) {
		cq.question = cq.tally = cq.revealed = cq.result = cq.mine = null;
	}
	render();
}

function download(text, name) {
	const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
	const a = h('a', { attrs: { href: url, download: name } });
	document.body.appendChild(a);
	a.click();
	a.remove();
	setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- texts of a question ----

function qText(q) {
	if (q.source === 'bank') return t(`quiz.${q.lab}.${q.q}`);
	return q.text || '';
}

function choiceText(q, c) {
	if (q.source === 'bank') {
		const k = `quiz.${q.lab}.${q.q}.c.${c}`;
		return has(k) ? t(k) : c;
	}
	const i = (q.choices || []).indexOf(c);
	return i >= 0 && q.labels ? q.labels[i] : c;
}

function valueText(q, v) {
	if (v === null || v === undefined) return t('quiz.no_answer');
	if (Array.isArray(v)) return v.map((n) => `#${n}`).join(', ');
	if (q.kind === 'choice') return choiceText(q, v);
	if (q.kind === 'pick') return `#${v}`;
	return String(v);
}

function whyText(v) {
	const w = (v && v.why) || {};
	const p = { ...(w.params || {}) };
	return w.key && has(w.key) ? t(w.key, p) : (w.text || '');
}

// ---- drawing ----

export function rerender() {
	render();
}

function render() {
	if (!cq.card || !app) return;
	const r = role();
	if (!r) {
		cq.card.hidden = true;
		return;
	}
	cq.card.hidden = false;
	const head = h('h3', { class: 'cq-title', attrs: { id: 'cq-title' }, text: r === 'teacher' ? t('cq.title_teacher') : t('cq.title_student') });
	const body = r === 'teacher' ? teacher() : student();
	replace(cq.card, head, body, h('p', { class: 'cq-msg', attrs: { role: 'status', 'aria-live': 'polite' } }));
	cq.card.dataset.state = cq.question ? cq.question.state : 'none';
}

function teacher() {
	const wrap = h('div', { class: 'cq-teacher' });
	wrap.appendChild(askForm());
	if (cq.question) wrap.appendChild(teacherQuestion());
	return wrap;
}

function askForm() {
	const lab = app.state.lab;
	const bank = lab && Array.isArray(lab.questions) ? lab.questions : [];
	const src = h('select', { attrs: { id: 'cq-source', 'aria-label': t('cq.source') } },
		bank.map((q) => h('option', { attrs: { value: `bank:${q.id}` }, text: t(`quiz.${lab.name}.${q.id}`) })),
		h('option', { attrs: { value: 'free:choice' }, text: t('cq.free_choice') }),
		h('option', { attrs: { value: 'free:number' }, text: t('cq.free_number') }));
	const text = h('input', { attrs: { id: 'cq-text', type: 'text', maxlength: 300, placeholder: t('cq.text_ph') } });
	const choices = h('textarea', { attrs: { id: 'cq-choices', rows: 3, placeholder: t('cq.choices_ph') } });
	const min = h('input', { attrs: { id: 'cq-min', type: 'number', value: 0, 'aria-label': 'min' } });
	const max = h('input', { attrs: { id: 'cq-max', type: 'number', value: 10, 'aria-label': 'max' } });
	const freeBox = h('div', { class: 'cq-free' }, text,
		h('div', { class: 'cq-free-choice' }, choices),
		h('div', { class: 'cq-free-number' }, h('span', { text: t('cq.range') }), min, '..', max));
	const sync = () => {
		const v = src.value;
		freeBox.hidden = !v.startsWith('free:');
		freeBox.querySelector('.cq-free-choice').hidden = v !== 'free:choice';
		freeBox.querySelector('.cq-free-number').hidden = v !== 'free:number';
	};
	src.addEventListener('change', sync);
	const ask = () => {
		const v = src.value;
		let question;
		if (v.startsWith('bank:')) question = { lab: lab.name, q: v.slice(5) };
		else if (v === 'free:choice') {
			question = { kind: 'choice', text: text.value.trim(), choices: choices.value.split('\n').map((x) => x.trim()).filter(Boolean) };
		} else question = { kind: 'number', text: text.value.trim(), min: Number(min.value), max: Number(max.value) };
		send({ action: 'open', question });
	};
	const form = h('div', { class: 'cq-ask' },
		h('label', { class: 'cq-label', text: t('cq.ask_label') }), src, freeBox,
		h('button', { class: 'btn btn-small btn-primary', attrs: { type: 'button', id: 'cq-open' }, text: t('cq.ask'), on: { click: ask } }));
	sync();
	return form;
}

function chart(q, tally) {
	const counts = (tally && tally.counts) || {};
	let keys;
	if (q.kind === 'choice') keys = q.choices || [];
	else keys = Object.keys(counts).sort((a, b) => Number(a) - Number(b));
	const most = Math.max(1, ...keys.map((k) => counts[k] || 0));
	const truth = cq.revealed && cq.revealed.truth ? cq.revealed.truth.truth : null;
	const isTruth = (k) => truth !== null && (Array.isArray(truth) ? truth.map(String).includes(k) : String(truth) === k);
	return h('div', { class: 'cq-chart', attrs: { role: 'list', 'aria-label': t('cq.chart') } },
		keys.map((k) => h('div', { class: `cq-bar-row${isTruth(k) ? ' cq-truth' : ''}`, attrs: { role: 'listitem' }, dataset: { key: k, count: String(counts[k] || 0) } },
			h('span', { class: 'cq-bar-label', text: valueText(q, q.kind === 'choice' ? k : Number(k)) }),
			h('span', { class: 'cq-bar-track' }, h('span', { class: 'cq-bar', dataset: { w: String(Math.round(100 * (counts[k] || 0) / most)) } })),
			h('span', { class: 'cq-bar-n', text: String(counts[k] || 0) }))));
}

// Widths through CSSOM (the CSP forbids inline style attributes).
function sizeBars(root) {
	for (const b of root.querySelectorAll('.cq-bar')) b.style.width = `${b.dataset.w}%`;
}

function teacherQuestion() {
	const m = cq.question;
	const q = m.question;
	const tally = cq.tally && cq.tally.id === m.id ? cq.tally : null;
	const box = h('div', { class: 'cq-current' },
		h('p', { class: 'cq-qtext', text: qText(q) }),
		h('p', { class: 'cq-count', attrs: { id: 'cq-count' }, text: t('cq.count', { n: tally ? tally.answered : 0, total: tally ? tally.members : 0, state: t(`cq.state.${m.state}`) }) }),
		chart(q, tally));
	const names = h('label', { class: 'cq-names-toggle' },
		h('input', { attrs: { type: 'checkbox', id: 'cq-show-names', checked: cq.showNames }, on: { change: (e) => { cq.showNames = e.target.checked; render(); } } }),
		t('cq.show_names'));
	box.appendChild(names);
	if (cq.showNames && tally) {
		box.appendChild(h('ul', { class: 'cq-who' }, tally.who.map((w) => h('li', { text: `${w.name}: ${valueText(q, w.answer)}` }))));
	}
	const actions = h('div', { class: 'cq-actions' });
	if (m.state === 'open') {
		actions.appendChild(h('button', { class: 'btn btn-small', attrs: { type: 'button', id: 'cq-close' }, text: t('cq.close'), on: { click: () => send({ action: 'close' }) } }));
	}
	if (m.state !== 'revealed') {
		let correct = null;
		if (q.source === 'free') {
			correct = q.kind === 'choice'
				? h('select', { attrs: { id: 'cq-correct', 'aria-label': t('cq.correct') } }, q.choices.map((c) => h('option', { attrs: { value: c }, text: choiceText(q, c) })))
				: h('input', { attrs: { id: 'cq-correct', type: 'number', min: q.min, max: q.max, 'aria-label': t('cq.correct') } });
			actions.appendChild(h('label', { class: 'cq-correct' }, t('cq.correct'), ' ', correct));
		}
		actions.appendChild(h('button', {
			class: 'btn btn-small btn-primary', attrs: { type: 'button', id: 'cq-reveal' }, text: q.source === 'bank' ? t('cq.reveal_run') : t('cq.reveal'),
			on: { click: () => send(correct ? { action: 'reveal', correct: q.kind === 'choice' ? correct.value : Number(correct.value) } : { action: 'reveal' }) },
		}));
	}
	actions.appendChild(h('button', { class: 'btn btn-small btn-ghost', attrs: { type: 'button', id: 'cq-csv' }, text: t('cq.csv'), on: { click: () => send({ action: 'csv' }) } }));
	box.appendChild(actions);
	if (cq.revealed && cq.revealed.id === m.id) {
		const r = cq.revealed;
		box.appendChild(h('div', { class: 'cq-reveal', attrs: { id: 'cq-revealed' } },
			h('p', { class: 'cq-truth-line', text: t('cq.truth', { truth: valueText(q, r.truth.truth) }) }),
			h('p', { text: t('cq.tally_result', { right: r.right, wrong: r.wrong, answered: r.answered }) }),
			h('p', { class: 'quiz-why', text: whyText(r.truth) })));
	}
	requestAnimationFrame(() => sizeBars(box));
	return box;
}

function student() {
	const m = cq.question;
	if (!m) return h('p', { class: 'muted', text: t('cq.waiting') });
	const q = m.question;
	const box = h('div', { class: 'cq-current' }, h('p', { class: 'cq-qtext', text: qText(q) }));
	if (m.state === 'open') {
		let input;
		const cur = cq.draft !== '' ? cq.draft : (cq.mine ?? '');
		if (q.kind === 'choice') {
			input = h('div', { class: 'quiz-choices', attrs: { role: 'radiogroup' } }, q.choices.map((c) => h('label', { class: 'quiz-choice' },
				h('input', { attrs: { type: 'radio', name: 'cq-answer', value: c, checked: String(cur) === c }, on: { change: () => { cq.draft = c; } } }),
				h('span', { text: choiceText(q, c) }))));
		} else {
			input = h('input', { attrs: { type: 'number', id: 'cq-answer', min: q.min, max: q.max, value: cur }, on: { input: (e) => { cq.draft = e.target.value.trim(); } } });
		}
		box.appendChild(input);
		box.appendChild(h('button', {
			class: 'btn btn-small btn-primary', attrs: { type: 'button', id: 'cq-send' }, text: cq.mine === null ? t('cq.send') : t('cq.change'),
			on: { click: () => {
				if (cq.draft === '') return;
				send({ action: 'answer', id: m.id, answer: q.kind === 'choice' ? cq.draft : Number(cq.draft) });
			} },
		}));
	}
	if (cq.mine !== null) box.appendChild(h('p', { class: 'cq-mine', attrs: { id: 'cq-mine' }, text: t(m.state === 'open' ? 'cq.mine' : 'cq.mine_final', { answer: valueText(q, cq.mine) }) }));
	if (m.state === 'closed') box.appendChild(h('p', { class: 'muted', text: t('cq.closed') }));
	if (cq.result && cq.result.id === m.id) {
		const v = cq.result.verdict;
		const res = v.result;
		box.appendChild(h('div', { class: `cq-result quiz-${res}`, attrs: { id: 'cq-result' }, dataset: { result: res } },
			h('p', {}, h('span', { class: `quiz-badge quiz-badge-${res}`, text: t(`quiz.result.${res}`) }), ' ',
				t('cq.truth', { truth: valueText(q, v.truth) })),
			h('p', { class: 'quiz-why', text: whyText(v) }),
			cq.result.run ? h('p', { class: 'muted', text: t('cq.graded_run', { run: cq.result.run }) }) : null));
	} else if (cq.revealed && cq.revealed.id === m.id) {
		box.appendChild(h('p', { class: 'cq-truth-line', text: t('cq.truth', { truth: valueText(q, cq.revealed.truth.truth) }) }));
	}
	return box;
}
